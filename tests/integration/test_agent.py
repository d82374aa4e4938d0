"""``--agent``: a real master answers HAProxy's agent-check over TCP on loopback (issue 16).

The answers follow the master through load, a reload, and a graceful stop with a drain
delay; clients that never read, never close or flood cost the master nothing.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import signal
import socket
import struct
import subprocess
import sys
import time

from conftest import ROOT, free_port, http_get, start_on_taken_address, wait_for


def agent(port: int, send: bytes = b"sockserve/h1\n") -> str:
    """One agent check, as HAProxy does it (``agent-send``, then read to EOF)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(send)
        data = b""
        while chunk := sock.recv(256):
            data += chunk
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    return data.decode().strip()


def keep_alive(port: int) -> socket.socket:
    """A connection that made one request and stays open (keep-alive)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sock


def test_agent_answers_ready_then_drain_then_maint_and_survives_bad_clients(start_server, tmp_path):
    port = free_port()
    sleep_file = tmp_path / "import-sleep"
    server = start_server("--workers", "2", "--agent", f"127.0.0.1:{port}", "--drain-delay", "1.5",
                          "--limit-concurrency", "10", "--timeout-keep-alive", "30",
                          "tests.apps.slowboot:app",
                          env={"SLOWBOOT_SLEEP_FILE": str(sleep_file)})
    assert agent(port) == "up ready 100%"
    assert agent(port, b"") == "up ready 100%"  # without agent-send too
    assert server.status()["agent"] == {"address": f"127.0.0.1:{port}", "answer": "up ready 100%",
                                        "answered": 2}
    shown = subprocess.run([sys.executable, "-m", "sockserve", "status", "--control-socket", server.control],
                           capture_output=True, text=True, cwd=ROOT, timeout=30).stdout
    assert f"HAProxy agent on 127.0.0.1:{port}: up ready 100%" in shown, shown

    # load: 10 keep-alive connections of 2 × 10 slots (limit_concurrency) -> about half free
    held = [keep_alive(server.port) for _ in range(10)]
    seen = []
    assert wait_for(lambda: seen.append(a := agent(port)) or a == "up ready 50%", 5), seen  # heartbeats
    for sock in held:
        sock.close()
    assert wait_for(lambda: agent(port) == "up ready 100%", 5)

    # clients that never read or close (more than MAX_CONNECTIONS), one that floods
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    flood = socket.create_connection(("127.0.0.1", port))
    with contextlib.suppress(OSError):  # reset once the agent had read its 4 KiB: what it should do
        flood.sendall(b"x" * 1_000_000)
    for _ in range(20):  # clients that reset at once (SO_LINGER 0)
        with socket.create_connection(("127.0.0.1", port)) as reset:
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    begun = time.monotonic()
    assert agent(port) == "up ready 100%" and time.monotonic() - begun < 3  # a hang guard
    assert http_get(server.port)[0] == 200
    for sock in [*idle, flood]:
        sock.close()

    # a reload: drain while the new generation boots, ready once it serves
    sleep_file.write_text("1.5")
    server.signal(signal.SIGHUP)
    assert wait_for(lambda: agent(port) == "up drain", 3)
    assert wait_for(lambda: agent(port) == "up ready 100%" and server.status()["generation"] == 2, 15)

    # a graceful stop: drain for 1.5 s while still serving, then maint, then exit 0.  A request
    # in flight across the drain delay holds the workers' graceful drain open, so the maint
    # phase lasts long enough to be seen (idle workers stop in a few ms, and then the agent's
    # port is closed: the check would be refused, as at any master's exit)
    slow = concurrent.futures.ThreadPoolExecutor(1)
    in_flight = slow.submit(http_get, server.port, "/?s=3", 10)
    server.signal(signal.SIGTERM)
    assert wait_for(lambda: agent(port) == "up drain", 2)
    assert http_get(server.port)[0] == 200  # the drain delay still serves new connections
    assert wait_for(lambda: agent(port) == "maint", 4)
    assert in_flight.result(10)[0] == 200  # the stop waited for it
    slow.shutdown()
    assert server.proc.wait(20) == 0
    assert "stopping gracefully after a 1.5s drain delay" in server.stderr()
    assert "Traceback" not in server.stderr() and "Unhandled" not in server.stderr(), server.stderr()


def test_agent_address_in_use_is_one_line_exit_2():
    address, code, lines = start_on_taken_address("--agent")
    assert code == 2 and lines == [f"sockserve: error: agent: cannot listen on {address}: "
                                   "Address already in use"], lines


LAUNCH = r"""
import os, socket, sys
socks = []
for port in (int(sys.argv[1]), int(sys.argv[2])):  # what a socket unit does: bind, listen, pass
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    socks.append(s)
high = [os.dup2(s.fileno(), 20 + i) for i, s in enumerate(socks)]  # out of the way of 3 and 4
for fd, old in enumerate(high, 3):
    os.dup2(old, fd)
    os.set_inheritable(fd, True)
os.environ.update(LISTEN_FDS="2", LISTEN_FDNAMES="http:agent", LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "sockserve", *sys.argv[3:]])
"""


def test_the_inherited_socket_named_agent_is_the_agents_never_a_workers(tmp_path):
    http, port, control = free_port(), free_port(), str(tmp_path / "control.sock")
    argv = [sys.executable, "-c", LAUNCH, str(http), str(port), "--workers", "1", "--log-target",
            "stderr", "--control-socket", control, "http=tests.apps.sample:asgi_app"]  # none for agent
    clash = subprocess.run([*argv, "--agent", f"127.0.0.1:{free_port()}"], capture_output=True,
                           text=True, cwd=ROOT, timeout=30)
    assert clash.returncode == 2 and "sockserve: error: agent: " in clash.stderr, clash.stderr
    assert f"FileDescriptorName=agent) on 127.0.0.1:{port}" in clash.stderr
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _quiet(agent, port) == "up ready 100%", 15)
        from sockserve.master.control import request
        assert request(control, {"cmd": "status"}, 5.0)["listeners"] == ["http"]
        assert http_get(http) == (200, "asgi / lifespan=lifespan.startup\n")
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def _quiet(check, *args):
    try:
        return check(*args)
    except OSError:
        return None


def test_checks_queued_when_the_master_leaves_are_answered_maint():
    """A check queued on the agent's socket when the master closes it gets ``maint``, not a
    close with no line (issue 16: stopping every unit lost one).  The real AgentServer and
    sockets; the event loop never runs between the connects and ``close()``, so every check
    is still in the kernel's queue, as at the master's exit."""
    import asyncio
    from types import SimpleNamespace

    from sockserve.master.agent import AgentServer

    port = free_port()

    async def leave_with_three_queued() -> list[bytes]:
        server = AgentServer(SimpleNamespace(config=SimpleNamespace(agent=f"127.0.0.1:{port}")), None)
        await server.start()
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        clients[0].sendall(b"sockserve/h1\n")  # an agent-send string, unread
        server.close()
        answers = []
        for client in clients:
            with client:
                answers.append(b"".join(iter(lambda c=client: c.recv(100), b"")))
        return answers

    assert asyncio.run(leave_with_three_queued()) == [b"maint\n"] * 3


def test_a_stop_while_checks_and_control_clients_linger_logs_no_traceback(start_server):
    """Agent checks that never close (the agent lingers on them, reading to EOF) and a
    control client that never asks, when the master stops: each is closed quietly
    (Python 3.11's streams logged a CancelledError traceback for each handler task)."""
    port = free_port()
    server = start_server("--workers", "1", "--agent", f"127.0.0.1:{port}")
    lingering = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    for sock in lingering:
        assert sock.recv(256) == b"up ready 100%\n"  # answered; the agent now waits for our EOF
    control = socket.socket(socket.AF_UNIX)
    control.connect(server.control)  # asks nothing: its handler waits in readuntil
    # answered after it: the silent client was accepted first (FIFO) and its handler waits
    assert server.status()["agent"]["answered"] == 3
    server.signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0
    for sock in [*lingering, control]:
        sock.close()
    stderr = server.stderr()
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr
