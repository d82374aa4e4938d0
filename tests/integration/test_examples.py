"""The examples run as documented."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, http_get, wait_for

pytestmark = pytest.mark.timeout(60)


def test_counter_master_counts_requests_reported_by_workers(start_server):
    server = start_server("--workers", "2", "--hooks", "examples.counter:setup_master",
                          "examples.counter:app")
    out = server.stdout_lines
    for _ in range(12):
        assert server.get() == (200, "hello world\n")
    assert wait_for(lambda: "numReqs = 12" in out(), 4), out()


def test_stream_echo_example(start_server):
    server = start_server("--workers", "2", "--interface", "stream", "examples.stream_echo:handle")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"one\ntwo\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(100):
            data += chunk
    assert data == b"one\ntwo\n"


def test_wsgi_and_asgi_examples(start_server):
    wsgi = start_server("--workers", "1", "examples.wsgi_app:application")
    assert wsgi.get("/x") == (200, "hello from WSGI, you asked for /x\n")
    asgi = start_server("--workers", "1", "examples.asgi_app:app")
    status, body = asgi.get("/")
    assert status == 200 and '"hello": "world"' in body


def test_python_api_runs_the_counter_example():
    proc = subprocess.Popen([sys.executable, "-m", "examples.counter"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    try:
        assert wait_for(lambda: _answers(), 10)
        for _ in range(3):
            http_get(8000)
        deadline = time.monotonic() + 10  # the master prints every second: until it counts 3
        while time.monotonic() < deadline and not _counted(seen, 3) and (line := proc.stdout.readline()):
            seen.append(line.rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert _counted(seen + out.splitlines(), 3), seen + out.splitlines()


def _counted(lines: list[str], at_least: int) -> bool:
    return any(line.startswith("numReqs = ") and int(line.split("= ")[1]) >= at_least for line in lines)


def _answers() -> bool:
    try:
        return http_get(8000)[0] == 200
    except OSError:
        return False
