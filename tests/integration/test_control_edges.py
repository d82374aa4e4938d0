"""The control socket as an edge: a same-user client flooding it, odd requests, a closed pipe.

Against a real master (and, for the wire rules, a ControlServer on a temp path).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, http_get, wait_for
from test_control import serve

from sockserve.master import control
from sockserve.master.control import MAX_CONNECTIONS, READ_TIMEOUT

pytestmark = pytest.mark.timeout(120)
APP = "tests.apps.pressure:app"
FLOOD = 300  # idle control connections; each held a master fd for 10 s before the cap


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def exchange(path: str, data: bytes, shut: bool = False) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return json.loads(sock.makefile("rb").readline())


def test_idle_control_connections_cannot_hold_the_masters_fds(start_server):
    server = start_server(APP, "--workers", "1")
    baseline = open_fds(server.pid)
    idle = []
    try:
        for _ in range(FLOOD):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.append(sock)
            sock.setblocking(False)
            for _ in range(100):  # the backlog is full until the master accepts: retry, bounded
                try:
                    sock.connect(server.control)
                    break
                except BlockingIOError:
                    time.sleep(0.01)
        time.sleep(0.5)  # let the master accept them all
        held = open_fds(server.pid) - baseline
        assert held <= MAX_CONNECTIONS + 4, f"{held} master fds held by {FLOOD} idle control clients"
        assert http_get(server.port)[0] == 200
        # the held ones are let go after READ_TIMEOUT; then a real request is answered
        assert wait_for(lambda: open_fds(server.pid) <= baseline + 2, READ_TIMEOUT + 5)
        assert server.status()["state"] == "running"
    finally:
        for sock in idle:
            sock.close()


def test_a_request_without_its_newline_is_answered_at_eof(start_server):
    server = start_server(APP, "--workers", "1")
    started = time.monotonic()
    answer = exchange(server.control, b'{"cmd": "status"}', shut=True)
    assert answer["ok"] and time.monotonic() - started < READ_TIMEOUT - 0.5


def test_wait_must_be_a_bool_and_an_unknown_command_is_logged_short(start_server):
    server = start_server(APP, "--workers", "1")
    answer = exchange(server.control, b'{"cmd": "reload", "wait": "yes"}\n')
    assert answer == {"ok": False, "error": 'reload: "wait" must be true or false'}
    answer = exchange(server.control, json.dumps({"cmd": "x" * 60_000}).encode() + b"\n")
    assert not answer["ok"] and len(answer["error"]) < 300
    assert wait_for(lambda: "unknown command" in server.stderr(), 5)
    logged = [line for line in server.stderr().splitlines() if "unknown command" in line]
    assert logged and all(len(line) < 500 for line in logged), [len(line) for line in logged]
    assert server.status()["generation"] == 1  # "wait": "yes" started no reload


def test_past_the_cap_a_connection_is_answered_busy_at_once(tmp_path, monkeypatch):
    """MAX_CONNECTIONS requests held in the handler; one more connection, which never sends a
    request, is answered busy.  READ_TIMEOUT is made 600 s, so a server that read (or waited)
    before answering would not answer within the 30 s hang guard: "at once" without a stopwatch."""
    monkeypatch.setattr(control, "READ_TIMEOUT", 600.0)
    path = str(tmp_path / "control.sock")
    inside: queue.Queue[None] = queue.Queue()
    release: list = []  # (loop, asyncio.Event) of the server's loop, set by the first handler

    async def hold(request: dict) -> dict:
        if not release:
            release.append((asyncio.get_running_loop(), asyncio.Event()))
        inside.put(None)
        await asyncio.wait_for(release[0][1].wait(), 60)
        return {"ok": True}

    def client():
        held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(MAX_CONNECTIONS)]
        try:
            for sock in held:
                sock.connect(path)
                sock.sendall(b'{"cmd": "status"}\n')
            for _ in held:  # the event: every one of them is being served
                inside.get(timeout=30)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as extra:
                extra.settimeout(30)
                extra.connect(path)
                return json.loads(extra.makefile("rb").readline())
        finally:
            loop, event = release[0] if release else (None, None)
            if loop is not None:
                loop.call_soon_threadsafe(event.set)
            for sock in held:
                sock.close()

    answer = serve(path, client, handler=hold)
    assert answer["ok"] is False and "busy" in answer["error"], answer


def test_status_into_a_closed_pipe_prints_no_traceback(start_server):
    server = start_server(APP, "--workers", "1")
    proc = subprocess.Popen([sys.executable, "-m", "sockserve", "status", "--control-socket",
                             server.control], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # like `sockserve status | head -0`: the reader is gone before the answer
    stderr = proc.stderr.read().decode()
    assert proc.wait(20) == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
