"""A bounded loopback HTTP load helper for the hardening tests.

Threads send ``GET`` requests, one fresh connection each (``Connection: close``),
until ``max_requests`` were made, ``seconds`` passed or ``stop()`` is called,
whichever comes first.  Every request yields an ``Outcome``; nothing is retried.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    """What one request got: a status, or the name of the error that ended it."""

    status: int  # 0 when no status line arrived
    error: str  # "" on success; else e.g. ConnectionResetError, EOF, TimeoutError
    body: str
    started: float  # time.monotonic() at connect
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def one_request(port: int, path: str = "/", timeout: float = 5.0) -> Outcome:
    """One request on a new connection; never raises for socket errors."""
    started = time.monotonic()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        return Outcome(_status(data), type(exc).__name__, "", started, time.monotonic() - started)
    head, _, body = data.partition(b"\r\n\r\n")
    error = "" if data else "EOF"  # closed before a byte came back: the connection was lost
    return Outcome(_status(head), error, body.decode(errors="replace"), started,
                   time.monotonic() - started)


def _status(head: bytes) -> int:
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(1 for o in self.outcomes if o.ok)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def errors(self) -> Counter[str]:
        """Failure kinds: the error name, or ``status <n>`` for a non-200 answer."""
        return Counter(o.error or f"status {o.status}" for o in self.failed)

    def summary(self) -> str:
        return f"{len(self.outcomes)} requests, {self.ok} ok, errors {dict(self.errors())}"


class Load:
    """Background load: ``with Load(port, ...) as load: ...`` then ``load.result``."""

    def __init__(self, port: int, *, threads: int = 4, max_requests: int = 100_000,
                 seconds: float = 30.0, path: str = "/", timeout: float = 5.0) -> None:
        self.port, self.path, self.timeout = port, path, timeout
        self.max_requests, self.seconds = max_requests, seconds
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._issued = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Load:
        self._deadline = time.monotonic() + self.seconds
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self) -> bool:
        with self._lock:
            if self._stop.is_set() or self._issued >= self.max_requests or time.monotonic() > self._deadline:
                return False
            self._issued += 1
            return True

    def _run(self) -> None:
        while self._take():
            outcome = one_request(self.port, self.path, self.timeout)
            with self._lock:
                self.result.outcomes.append(outcome)


def run_load(port: int, **kwargs: object) -> LoadResult:
    """Blocking: run a Load to its bounds and return what every request got."""
    load = Load(port, **kwargs)  # type: ignore[arg-type]
    load.start()
    for thread in load._threads:
        thread.join()
    return load.result
