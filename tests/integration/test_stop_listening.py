"""Embedded mode stops listening at once on SIGTERM: new clients are refused (and retry
elsewhere) instead of waiting in a queue nobody reads; what is in flight or already queued is
served.  Sockets passed by systemd keep their queue (the next start serves it)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, answers, free_port, http_get, in_workers, wait_for

pytestmark = pytest.mark.timeout(60)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def in_background(fn, *args) -> dict:
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args)
        except Exception as exc:  # reported by the asserting test
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    result["thread"] = thread
    return result


def status(control: str) -> dict:
    from sockserve.master.control import request
    return request(control, {"cmd": "status"}, 5.0)


def unacked(server) -> int:
    """Connections handed to the workers that they have neither accepted nor rejected yet."""
    return sum(w["handed"] - w["accepted"] - w["rejected"] for w in server.status()["workers"])


def accept_queue(port: int) -> int:
    """Connections waiting in the kernel's accept queue of the listener on ``port`` (its Recv-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    return int(out[1]) if out else 0


@pytest.mark.parametrize("policy", ["rr", "shared", "reuseport"])
def test_sigterm_refuses_new_connections_at_once_and_finishes_in_flight(start_server, policy):
    server = start_server("tests.apps.sample:slow_app", "--workers", "2", "--policy", policy,
                          "--graceful-timeout", "10")
    slow = in_background(http_get, server.port, "/?s=4")
    assert wait_for(lambda: in_workers(server) == 1, 5)  # the request is in a worker
    server.signal(signal.SIGTERM)
    # at once, not when the master exits (after the 4 s request); 2 s: a hang guard on a busy box
    assert wait_for(lambda: refused(server.port), 2.0), "a new client still connects after SIGTERM"
    slow["thread"].join(10)
    assert slow.get("value") == (200, "slept 4.0\n"), slow
    assert server.proc.wait(15) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shared_workers_meet_the_shut_down_socket_quietly(start_server, sig):
    """The master shuts the shared socket down under the workers' accept loops: no EINVAL spin."""
    server = start_server("tests.apps.sample:slow_app", "--workers", "2", "--policy", "shared")
    slow = in_background(http_get, server.port, "/?s=1")
    time.sleep(0.3)  # (in flight or not, the stop must meet the shut-down socket quietly)
    server.signal(sig)
    assert server.proc.wait(15) == 0
    slow["thread"].join(10)
    err = server.stderr()  # (a request cancelled at SIGINT is logged by uvicorn, as uvicorn does)
    assert "Invalid argument" not in err and "_accept" not in err, err


def test_connection_queued_before_sigterm_is_served(start_server):
    """Left in the kernel's queue (the worker's rr window was full): handed out, not reset."""
    import os

    server = start_server("tests.apps.sample:slow_app", "--workers", "1", "--rr-window", "1")
    (worker,) = server.worker_pids().values()
    os.kill(worker, signal.SIGSTOP)  # its window fills with one un-acked hand-off
    try:
        first = in_background(http_get, server.port, "/?s=0")
        assert wait_for(lambda: unacked(server) == 1, 5), server.status()  # handed, never acked
        queued = in_background(http_get, server.port, "/?s=0")  # stays in the accept queue
        assert wait_for(lambda: accept_queue(server.port) == 1, 5)
        server.signal(signal.SIGTERM)
        assert wait_for(lambda: server.status()["state"] == "stopping", 5)  # the worker still stopped
    finally:
        os.kill(worker, signal.SIGCONT)
    for request in (first, queued):
        request["thread"].join(10)
        assert request.get("value") == (200, "slept 0.0\n"), request
    assert server.proc.wait(15) == 0


def test_connection_queued_while_booting_is_refused_at_a_stop_not_left_waiting(start_server):
    """No worker listens yet to hand it to: it is closed at once, the client retries elsewhere."""
    server = start_server("tests.apps.stopping:slow_start", "--workers", "1", "--boot-timeout", "6",
                          ready=False)
    assert wait_for(lambda: not refused(server.port), 10)  # bound; the worker is in its 5 s startup
    client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    client.sendall(b"GET /slow?s=0 HTTP/1.1\r\nHost: x\r\n\r\n")
    server.signal(signal.SIGTERM)
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):  # reset (the request was unread) or EOF
        assert client.recv(65536) == b""
    assert time.monotonic() - started < 1.5  # not when a worker listens, nor when the master exits
    assert wait_for(lambda: refused(server.port), 2.0)
    server.proc.wait(30)


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"), reason="no systemd-socket-activate")
def test_socket_from_systemd_keeps_its_queue_during_a_stop(tmp_path):
    """Not shut down: systemd's copy must keep queueing for the next start."""
    port = free_port()
    control = str(tmp_path / "control.sock")
    cmd = ["systemd-socket-activate", "-E", "PYTHONPATH", "-l", f"127.0.0.1:{port}", sys.executable,
           "-m", "sockserve", "tests.apps.sample:slow_app", "--workers", "1",
           "--control-socket", control, "--graceful-timeout", "10"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: answers(port, "/?s=0"), 15)
        slow = in_background(http_get, port, "/?s=2")
        assert wait_for(lambda: sum(w["open"] for w in status(control)["workers"]) == 1, 5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert not refused(port)  # queued in the kernel for whoever owns the socket next
        slow["thread"].join(10)
        assert slow.get("value") == (200, "slept 2.0\n"), slow
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
