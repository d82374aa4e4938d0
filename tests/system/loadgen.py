"""Bounded HTTP load loop for system tests; prints one JSON summary line.

Run it in the box's network namespace (``box.net_cmd(sys.executable, loadgen.py, ...)``).
Stops at ``--count`` requests, after ``--seconds``, or when ``--stop-file`` exists,
whichever comes first. Each request is a fresh connection (``Connection: close``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
PID_RE = re.compile(rb"pid[ =:]*(\d+)")


def one_request(host: str, port: int, timeout: float) -> bytes:
    """Full response to one GET (raises OSError on any socket failure)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class Tally:
    """Thread-safe counters of outcomes."""

    def __init__(self, expect: bytes = b"hello world") -> None:
        self.expect = expect  # in the body of a good answer
        self.lock = threading.Lock()
        self.ok = self.refused = self.bad_status = 0
        self.errors: dict[str, int] = {}
        self.pids: set[int] = set()

    def record(self, response: bytes | None, error: BaseException | None) -> None:
        with self.lock:
            if isinstance(error, ConnectionRefusedError):
                self.refused += 1
            elif error is not None:
                name = type(error).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
            elif response.startswith(b"HTTP/1.1 200") and self.expect in response:
                self.ok += 1
                self.pids.update(int(m) for m in PID_RE.findall(response))
            else:
                self.bad_status += 1

    def summary(self) -> dict:
        return {"ok": self.ok, "refused": self.refused, "bad_status": self.bad_status,
                "errors": self.errors, "pids": sorted(self.pids)}


def worker(args: argparse.Namespace, tally: Tally, budget: list[int], deadline: float) -> None:
    while time.monotonic() < deadline and not os.path.exists(args.stop_file or "/nonexistent"):
        with tally.lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        try:
            tally.record(one_request(args.host, args.port, args.timeout), None)
        except OSError as e:
            tally.record(None, e)
        time.sleep(args.pause)


class BackgroundLoad:
    """Host side: run this script in a box's netns in the background; ``finish()`` -> summary."""

    def __init__(self, box, port: int = 8000, count: int = 3000, seconds: float = 30.0,
                 concurrency: int = 4, expect: str = "hello world"):
        self.stop_file = os.path.join(tempfile.mkdtemp(prefix="sockserve-load-"), "stop")
        argv = [sys.executable, __file__, "--port", str(port), "--count", str(count),
                "--seconds", str(seconds), "--concurrency", str(concurrency), "--stop-file", self.stop_file,
                "--expect", expect]
        self.proc = subprocess.Popen(box.net_cmd(*argv), stdout=subprocess.PIPE, text=True)
        self.seconds = seconds

    def finish(self) -> dict:
        """Stop the loop (it ends its in-flight requests) and return its summary."""
        with open(self.stop_file, "w"):
            pass
        out, _ = self.proc.communicate(timeout=self.seconds + 30)
        os.unlink(self.stop_file)
        os.rmdir(os.path.dirname(self.stop_file))
        return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--count", type=int, default=2000, help="at most this many requests")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pause", type=float, default=0.005, help="sleep between requests")
    parser.add_argument("--timeout", type=float, default=15.0, help="per request")
    parser.add_argument("--stop-file", help="stop early once this path exists")
    parser.add_argument("--expect", default="hello world", help="text a good answer's body holds")
    args = parser.parse_args()
    tally, budget = Tally(args.expect.encode()), [args.count]
    deadline = time.monotonic() + args.seconds
    threads = [threading.Thread(target=worker, args=(args, tally, budget, deadline))
               for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(tally.summary()), flush=True)


if __name__ == "__main__":
    main()
