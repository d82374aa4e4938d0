"""sd_notify(3): tell the service manager about readiness, status and liveness.

Sends through python-systemd when importable, else sdnotify, else a small
datagram sender of our own (which also serves environments that are not the
process's own, e.g. in tests). Only the master talks to systemd: workers get
``scrub_env`` environments.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
WORKER_HIDDEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", *NOTIFY_VARIABLES)

Sender = Callable[[str], bool]


class Notifier:
    """Sends sd_notify lines when ``NOTIFY_SOCKET`` was set, otherwise does nothing."""

    def __init__(self, address: str | None, watchdog_usec: str | None = None,
                 watchdog_pid: str | None = None, sender: Sender | None = None) -> None:
        self.address = address or None
        self._watchdog = (watchdog_usec, watchdog_pid)
        self._send = sender or (_socket_sender(address) if address else None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """A notifier for ``environ``'s NOTIFY_SOCKET and WATCHDOG_* values."""
        address = environ.get("NOTIFY_SOCKET") or None
        sender = None
        if address and address == os.environ.get("NOTIFY_SOCKET"):
            sender = _library_sender()
        return cls(address, environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID"), sender)

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False when disabled or the send failed."""
        if self._send is None or not lines:
            return False
        return self._send("\n".join(lines))

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of WATCHDOG_USEC), or None."""
        usec, pid = self._watchdog
        if not usec or not usec.isdigit() or int(usec) == 0:
            return None
        if pid and (not pid.isdigit() or int(pid) != os.getpid()):
            return None
        return int(usec) / 2 / 1_000_000


def scrub_env(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without LISTEN_*, NOTIFY_SOCKET and WATCHDOG_* (for workers)."""
    return {k: v for k, v in environ.items() if k not in WORKER_HIDDEN_VARIABLES}


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd expects in MONOTONIC_USEC=."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def reloading_lines() -> list[str]:
    """The lines that open a reload (``Type=notify-reload`` protocol, also fine for notify)."""
    return ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}"]


def extend_timeout_line(seconds: float) -> str:
    """Ask systemd for ``seconds`` more to finish starting or stopping."""
    return f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1_000_000))}"


def _library_sender() -> Sender | None:
    """python-systemd's or sdnotify's notify for the process NOTIFY_SOCKET, if installed."""
    try:
        from systemd import daemon
    except ImportError:
        daemon = None
    if daemon is not None:
        def send_daemon(text: str) -> bool:
            try:
                return bool(daemon.notify(text))
            except OSError:
                return False
        return send_daemon
    try:
        import sdnotify
    except ImportError:
        return None
    try:
        notifier = sdnotify.SystemdNotifier(debug=True)
    except OSError:
        return None

    def send_sdnotify(text: str) -> bool:
        try:
            notifier.notify(text)
            return True
        except OSError:
            return False
    return send_sdnotify


def _socket_sender(address: str) -> Sender:
    """Send to ``address`` (a path, or ``@name`` for an abstract socket) with our own socket."""
    target = "\0" + address[1:] if address.startswith("@") else address

    def send(text: str) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(text.encode(), target)
            return True
        except OSError:
            return False
    return send
