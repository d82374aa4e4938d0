"""sd_notify(3): tell the service manager about readiness, status and liveness.

Never blocks the master's loop.  libsystemd's sd_notify (python-systemd) and a
plain datagram socket both block while the receiver's queue is full
(net.unix.max_dgram_qlen, 10 without systemd's sysctl defaults): a busy or
slow reader would freeze every hand-off.  So the datagrams go through
sdnotify's socket (or our own, for environments other than the process's)
switched to non-blocking; what does not fit waits in a small queue that
``flush()`` retries, newer STATUS= lines replacing older ones.  Only the
master talks to systemd: workers get ``scrub_env`` environments.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping

NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
WORKER_HIDDEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", *NOTIFY_VARIABLES)

Sender = Callable[[str], bool]  # True: sent; False: cannot be sent; BlockingIOError: try again
MAX_PENDING = 64  # datagrams kept while the receiver is slow; STATUS= lines coalesce


class Notifier:
    """Sends sd_notify lines when ``NOTIFY_SOCKET`` was set, otherwise does nothing."""

    def __init__(self, address: str | None, watchdog_usec: str | None = None,
                 watchdog_pid: str | None = None, sender: Sender | None = None) -> None:
        self.address = address or None
        self._watchdog = (watchdog_usec, watchdog_pid)
        self._send = sender or (_socket_sender(address) if address else None)
        self._pending: deque[str] = deque()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """A notifier for ``environ``'s NOTIFY_SOCKET and WATCHDOG_* values."""
        address = environ.get("NOTIFY_SOCKET") or None
        sender = None
        if address and address == os.environ.get("NOTIFY_SOCKET"):
            sender = _sdnotify_sender()
        return cls(address, environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID"), sender)

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram (queued if the receiver is busy); False if not sent now."""
        if self._send is None or not lines:
            return False
        text = "\n".join(lines)
        if _status_only(text):  # only the newest status matters
            self._pending = deque(t for t in self._pending if not _status_only(t))
        self._pending.append(text)
        while len(self._pending) > MAX_PENDING:
            self._pending.popleft()
        return self.flush()

    def flush(self) -> bool:
        """Send what is queued, in order; True when nothing is left."""
        while self._pending and self._send is not None:
            try:
                sent = self._send(self._pending[0])
            except (BlockingIOError, InterruptedError):
                return False
            self._pending.popleft()
            if not sent:
                return False
        return True

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


def _status_only(text: str) -> bool:
    return text.startswith("STATUS=") and "\n" not in text


def _sdnotify_sender() -> Sender | None:
    """sdnotify's socket for the process's NOTIFY_SOCKET, made non-blocking."""
    try:
        import sdnotify
    except ImportError:
        return None
    try:
        notifier = sdnotify.SystemdNotifier(debug=True)  # debug: errors raise instead of vanishing
    except OSError:
        return None
    notifier.socket.setblocking(False)
    return _guarded(notifier.notify)


def _socket_sender(address: str) -> Sender:
    """A non-blocking datagram socket of our own to ``address`` (a path, or ``@name``)."""
    target = "\0" + address[1:] if address.startswith("@") else address
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    return _guarded(lambda text: sock.sendto(text.encode(), target))


def _guarded(send_text: Callable[[str], object]) -> Sender:
    """A Sender: True once sent, False when it cannot be; BlockingIOError passes (retry later)."""
    def send(text: str) -> bool:
        try:
            send_text(text)
        except (BlockingIOError, InterruptedError):
            raise
        except OSError:
            return False
        return True
    return send
