"""A real worker process, with the test playing the master over a real socketpair."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from workerharness import (
    DEBIAN_PYTHON,
    REPO,
    WorkerUnderTest,
    accepted_pair,
    debian_python_reason,
    http_get,
    http_request,
    is_eof,
    is_gone,
    read_response,
    worker_env,
)

from sockserve.cluster import protocol

pytestmark = pytest.mark.timeout(60)
PYTHONS = ["venv", pytest.param(DEBIAN_PYTHON, id="debian")]


def _python(name: str) -> dict:
    if name == "venv":
        return {}
    reason = debian_python_reason()
    if reason:
        pytest.skip(reason)
    return {"python": DEBIAN_PYTHON}


@pytest.mark.parametrize("python", PYTHONS)
def test_rr_handoff_is_acked_and_answered(start, lsock, python) -> None:
    worker = start(**_python(python))
    worker.boot("rr")
    client, conn = accepted_pair(lsock)
    assert worker.hand_off(conn, seq=1).accepted
    http_request(client, "/", close=True)
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == f"hello world from worker 7 (pid {worker.proc.pid})\n".encode()
    assert b"content-type: text/plain" in head.lower()


def test_heartbeat_counts_open_and_served(start, lsock) -> None:
    worker = start()
    client = worker.handed_client(lsock)
    for _ in range(3):  # three requests on one keep-alive connection
        http_request(client, "/")
        read_response(client)
    deadline = time.monotonic() + 5
    while not any(h == protocol.Heartbeat(1, 3) for h in worker.heartbeats):
        assert time.monotonic() < deadline, worker.heartbeats[-3:]
        _pump(worker)
    client.close()


def _pump(worker: WorkerUnderTest) -> None:
    with contextlib.suppress(TimeoutError):
        worker.recv(timeout=0.3)


def test_shared_mode_accepts_on_the_masters_listener(start, lsock) -> None:
    worker = start()
    worker.boot("shared", fds=[lsock.fileno()])
    body = http_get(lsock.getsockname(), "/")
    assert body.startswith(f"hello world from worker 7 (pid {worker.proc.pid})".encode())


def test_reuseport_mode_binds_its_own_socket(start) -> None:
    holder = socket.socket()  # reserves a free port; SO_REUSEPORT but never listening
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    try:
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        worker = start()
        worker.boot("reuseport", address=address)
        body = http_get(holder.getsockname(), "/")
        assert f"(pid {worker.proc.pid})".encode() in body
    finally:
        holder.close()


def test_reuseport_on_a_taken_port_exits_1(start, lsock) -> None:
    worker = start()  # lsock listens without SO_REUSEPORT: the bind must fail
    worker.expect(protocol.Online, timeout=15)
    worker.expect(protocol.QueryServer)
    worker.send(protocol.ServerReply("http", "reuseport", f"127.0.0.1:{lsock.getsockname()[1]}"))
    assert worker.wait() == 1
    assert "cannot listen on 127.0.0.1" in worker.stderr_now()


def test_server_reply_error_exits_1(start) -> None:
    worker = start()
    worker.expect(protocol.Online, timeout=15)
    worker.expect(protocol.QueryServer)
    worker.send(protocol.ServerReply("http", "error", error="no such listener"))
    assert worker.wait() == 1
    assert "no such listener" in worker.stderr_now()


@pytest.mark.parametrize("python", PYTHONS)
def test_disconnect_lets_a_slow_request_finish_then_exits_0(start, lsock, python) -> None:
    worker = start(app="tests.apps.sample:slow_app", **_python(python))
    client = worker.handed_client(lsock)
    http_request(client, "/?s=1.0")
    time.sleep(0.3)  # the request is in flight
    sent = time.monotonic()
    worker.send(protocol.Disconnect())
    assert worker.expect(protocol.Close) == protocol.Close("http")
    head, body = read_response(client)
    assert body == b"slept 1.0\n"
    assert head.startswith(b"HTTP/1.1 200")  # uvicorn >= 0.18 also says Connection: close
    assert is_eof(client)
    assert worker.wait() == 0
    assert 0.5 < time.monotonic() - sent < 5


def _keepalive_client(start, lsock):
    """A worker, and a client whose keep-alive connection to it has served one request."""
    worker = start()
    client = worker.handed_client(lsock)
    http_request(client, "/")
    read_response(client)
    return worker, client


def test_idle_keepalive_connection_is_closed_after_the_grace_on_disconnect(start, lsock) -> None:
    worker, client = _keepalive_client(start, lsock)
    started = time.monotonic()
    worker.send(protocol.Disconnect())
    assert is_eof(client, timeout=8)  # uvicorn's keep-alive timeout (5 s) is the grace
    assert 4 < time.monotonic() - started < 7
    assert worker.wait(timeout=3) == 0


def test_idle_keepalive_connection_gets_one_last_answer_on_disconnect(start, lsock) -> None:
    worker, client = _keepalive_client(start, lsock)
    worker.send(protocol.Disconnect())
    time.sleep(0.5)
    http_request(client, "/")  # on its way while the worker drains: answered, then closed
    head, _ = read_response(client)
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    assert is_eof(client, timeout=2)
    assert worker.wait(timeout=3) == 0


def test_newconn_after_close_is_rejected_and_its_fd_released(start, lsock) -> None:
    worker = start(app="tests.apps.sample:slow_app")
    slow_client = worker.handed_client(lsock)
    http_request(slow_client, "/?s=1.5")  # keeps the worker draining
    time.sleep(0.2)
    worker.send(protocol.Disconnect())
    worker.expect(protocol.Close)
    client, conn = accepted_pair(lsock)
    ack = worker.hand_off(conn, seq=2)
    assert ack == protocol.Ack((2,), False)
    conn.close()  # the master's copy; the worker must hold none
    assert is_eof(client), "the worker kept the rejected connection open"
    assert read_response(slow_client)[1] == b"slept 1.5\n"
    assert worker.wait() == 0


def test_newconn_for_a_key_not_served_is_rejected(start, lsock) -> None:
    worker = start()
    worker.boot("rr")
    client, conn = accepted_pair(lsock)
    assert worker.hand_off(conn, seq=5, key="other") == protocol.Ack((5,), False)
    conn.close()
    assert is_eof(client)


def test_worker_exits_within_1s_when_the_master_end_closes(start) -> None:
    worker = start()
    worker.boot("rr")
    closed = time.monotonic()
    worker.master.close()
    assert worker.wait(timeout=2) != 0
    assert time.monotonic() - closed < 1.0


def test_sigterm_is_a_graceful_disconnect(start) -> None:
    worker = start()
    worker.boot("rr")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.expect(protocol.Close) == protocol.Close("http")
    assert worker.wait() == 0


def test_sigint_is_ignored(start, lsock) -> None:
    worker = start()
    worker.boot("rr")
    worker.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert worker.proc.poll() is None
    client, conn = accepted_pair(lsock)
    assert worker.hand_off(conn, seq=1).accepted


@pytest.mark.parametrize(("app", "error"), [
    ("tests.apps.broken:app", "RuntimeError: this app is broken on purpose"),
    ("tests.apps.sample:missing", "AttributeError: module 'tests.apps.sample' has no attribute 'missing'"),
    ("tests.apps.sample:NOT_AN_APP", "TypeError: a int object is not callable"),
    ("tests.apps.sample:three_and_more", "TypeError: a coroutine function taking 4 arguments"),
    ("no_such_module_xyz:app", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
])
def test_bad_app_tells_the_master_why_and_exits_6(start, app, error) -> None:
    worker = start(worker_id=5, app=app)
    failure = worker.recv(timeout=15)
    assert isinstance(failure, protocol.BootError), failure
    assert failure.reason.startswith(f"cannot load app '{app}': {error}")
    assert "\n" not in failure.reason
    assert worker.wait() == 6
    assert worker.stderr_now() == ""  # the master prints it, once for all workers


def test_bad_app_without_a_master_says_it_on_stderr(start) -> None:
    worker = start(worker_id=5, app="no_such_module_xyz:app")
    worker.master.close()  # nobody to tell
    assert worker.wait() == 6
    lines = worker.stderr_now().splitlines()
    assert len(lines) == 1 and "No module named 'no_such_module_xyz'" in lines[0], lines


@pytest.mark.parametrize("python", PYTHONS)
def test_wsgi_app_is_served(start, lsock, python) -> None:
    worker = start(app="tests.apps.sample:wsgi_app", **_python(python))
    client = worker.handed_client(lsock)
    http_request(client, "/w", close=True)
    assert read_response(client)[1] == b"wsgi /w\n"


def test_stream_handler_is_served_and_counted(start, lsock) -> None:
    worker = start(app="tests.apps.sample:stream_handler")
    client = worker.handed_client(lsock)
    client.sendall(b"ping\n")
    client.settimeout(5)
    assert client.recv(100) == b"PING\n"
    assert is_eof(client)  # the connection ends when the handler returns
    deadline = time.monotonic() + 5
    while not worker.heartbeats or worker.heartbeats[-1] != protocol.Heartbeat(0, 1):
        assert time.monotonic() < deadline, worker.heartbeats[-3:]
        _pump(worker)


def test_asgi_lifespan_startup_runs_before_serving(start, lsock) -> None:
    worker = start(app="tests.apps.sample:asgi_app", interface="asgi")
    client = worker.handed_client(lsock)
    http_request(client, "/p", close=True)
    assert read_response(client)[1] == b"asgi /p lifespan=lifespan.startup\n"


def test_user_messages_reach_worker_on_message(start) -> None:
    worker = start(app="tests.apps.sample:echo_app")
    worker.boot("rr")
    worker.send(protocol.UserMessage({"n": 1}))
    assert worker.expect(protocol.UserMessage) == protocol.UserMessage({"echo": {"n": 1}, "id": 7})


def test_handed_off_connections_leave_no_fds_behind(start, lsock) -> None:
    worker = start()
    worker.boot("rr")
    client, conn = accepted_pair(lsock)  # warm up: first connection loads lazy modules
    worker.hand_off(conn, seq=0)
    http_request(client, close=True)
    read_response(client)
    time.sleep(0.2)
    baseline = worker.open_fds()
    for seq in range(1, 21):
        client, conn = accepted_pair(lsock)
        worker.hand_off(conn, seq=seq)
        http_request(client, close=True)
        read_response(client)
        assert is_eof(client)
        client.close()
    time.sleep(0.3)
    assert worker.open_fds() == baseline, os.listdir(f"/proc/{worker.proc.pid}/fd")


@pytest.mark.parametrize("python", PYTHONS)
def test_both_uvicorn_http_protocols_answer(python) -> None:
    """httptools (when it works) and h11, with this interpreter's uvicorn."""
    exe = _python(python).get("python", sys.executable)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([exe, "-m", "tests.apps.serve_once"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert lines[0].split()[:2] in (["HttpToolsProtocol", "chosen"], ["H11Protocol", "chosen"])
    assert lines[1].startswith("H11Protocol forced HTTP/1.1 200 OK | hello world from worker 1")
    assert "HTTP/1.1 200 OK | hello world from worker 1" in lines[0]


def test_sigquit_cancels_at_once_and_exits(start, lsock) -> None:
    worker = start(app="tests.apps.sample:slow_app")
    client = worker.handed_client(lsock)
    http_request(client, "/?s=10")  # in flight; SIGQUIT does not wait for it
    time.sleep(0.2)
    worker.proc.send_signal(signal.SIGQUIT)
    assert is_eof(client)  # closed (then cancelled: slow_app never reads receive())
    assert worker.wait(timeout=3) == 0  # well before the 10 s; the lifespan shutdown ran first


PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "sockserve.worker"], pass_fds=[int(sys.argv[1])])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_worker_dies_with_its_parent_even_if_the_channel_stays_open() -> None:
    """PR_SET_PDEATHSIG backstop: the parent is SIGKILLed, the channel's master end stays open."""
    master, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = worker_env(9, worker_end.fileno(), {"app": None, "keys": ["http"]})
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(worker_end.fileno())], env=env,
                              cwd=REPO, pass_fds=[worker_end.fileno()], stdout=subprocess.PIPE)
    worker_end.close()
    try:
        pid = int(parent.stdout.readline())
        master.settimeout(15)
        assert master.recv(4096)[0] == protocol.Online.code  # the worker runs
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 1.0
        while not is_gone(pid):
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait(5)
        parent.stdout.close()
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)
        master.close()


def test_failed_lifespan_startup_is_a_boot_error_and_exits_6(start) -> None:
    worker = start(app="tests.apps.sample:failing_startup_app")
    worker.expect(protocol.Online, timeout=15)
    failure = worker.recv()  # no QueryServer: it tells why and leaves
    assert isinstance(failure, protocol.BootError) and "lifespan startup failed" in failure.reason
    assert worker.recv() is None
    assert worker.wait() == 6
