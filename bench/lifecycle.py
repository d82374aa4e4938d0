"""Start-up and reload measurements: first answer, READY (sd_notify), reload under load."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import procstats

_PID = re.compile(rb"\(pid (\d+)\)")


def get(port: int, timeout: float = 1.0) -> int | None:
    """One ``GET /`` with Connection: close; the answering pid (0 if unnamed), None on failure."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    if not data.startswith(b"HTTP/1.1 200"):
        return None
    found = _PID.search(data)
    return int(found.group(1)) if found else 0


class NotifyListener:
    """A NOTIFY_SOCKET of our own: records (time, message) of every sd_notify datagram."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.events: list[tuple[float, str]] = []

    def poll(self) -> None:
        """Move every waiting datagram into ``events``."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            self.events.append((time.monotonic(), data.decode(errors="replace")))

    def first(self, field: str, after: float = 0.0) -> float | None:
        """Time of the first message after ``after`` that has the line ``field``."""
        self.poll()
        for when, text in self.events:
            if when >= after and field in text.splitlines():
                return when
        return None

    def close(self) -> None:
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)


def wait_first_answer(port: int, started: float, timeout: float) -> float | None:
    """Seconds from ``started`` to the first 200 answer on ``port``; None after ``timeout``."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if get(port, timeout=0.5) is not None:
            return time.monotonic() - started
        time.sleep(0.002)
    return None


def wait_ready(listener: NotifyListener, started: float, timeout: float) -> float | None:
    """Seconds from ``started`` to READY=1 (after ``started``); None after ``timeout``."""
    deadline = started + timeout
    while True:
        when = listener.first("READY=1", after=started)
        if when is not None:
            return when - started
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


def wait_workers(master: int, count: int, timeout: float) -> list[int]:
    """The master's workers once there are ``count`` of them (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    found = procstats.workers(master)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.01)
        found = procstats.workers(master)
    return found


def wait_replaced(master: int, old: list[int], count: int, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until every ``old`` worker is gone and ``count`` new ones run."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        current = procstats.workers(master)
        fresh = [p for p in current if p not in old]
        if not any(procstats.alive(p) for p in old) and len(fresh) >= count:
            return time.monotonic() - since
        time.sleep(0.005)
    return None
