"""sockserve.cluster as a library (issue 15): Node's events in Node's order, several listeners
per worker under rr and shared, handles released with their last user, systemd's named socket.
The program is tests/apps/cluster_events.py; it prints one JSON line per event."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest
from conftest import ROOT, connects, free_port, http_get, parsed, program_env, terminate, wait_for
from test_socket_activation import listening_socket_inodes, socket_inodes

from sockserve.master import native

pytestmark = pytest.mark.timeout(60)
APP = str(ROOT / "tests" / "apps" / "cluster_events.py")
TWO = "http:port=0,host=127.0.0.1;echo:port=0,host=127.0.0.1"


class Program:
    """The test program running; ``events`` fills as it prints."""

    def __init__(self, *prefix: str, **env: str) -> None:
        self.proc = subprocess.Popen([*prefix, sys.executable, APP], cwd=ROOT, text=True,
                                     env=program_env(**env),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[list] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("["):
                self.events.append(parsed(line))

    def read_to_end(self, timeout: float = 10) -> None:
        """Every line read: the reader meets EOF once the primary and its workers are gone."""
        self._reader.join(timeout)

    def names(self, worker: int | None = None) -> list[str]:
        return [e[0] for e in self.events if worker is None or (len(e) > 1 and e[1] == worker)]

    def wait(self, name: str, count: int = 1, timeout: float = 20) -> bool:
        return wait_for(lambda: self.names().count(name) >= count, timeout)

    def ports(self) -> list[int]:
        return sorted({e[2]["port"] for e in self.events if e[0] == "listening"})

    def exit_code(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)


def run_to_end(scenario: str, workers: int = 1) -> Program:
    program = Program(SCENARIO=scenario, WORKERS=str(workers))
    assert program.exit_code() == 0, program.proc.stderr.read()  # no worker left: it ends
    program.read_to_end()
    return program


NODE_ORDER = ["fork", "worker.online", "online", "listening", "worker.disconnect", "disconnect",
              "worker.exit", "exit"]


@pytest.mark.parametrize("scenario, code, sig, asked", [
    ("kill", None, "SIGTERM", True),  # worker.kill(): SIGTERM, no graceful disconnect
    ("disconnect", 0, None, True),  # worker.disconnect(): drains, exits 0
    ("crash", 3, None, False),  # it left by itself: exitedAfterDisconnect false
    ("leave", 0, None, True),  # cluster.worker.disconnect() in the worker: true (Node)
])
def test_one_worker_events_in_node_order(scenario, code, sig, asked):
    program = run_to_end(scenario)
    assert program.names(1) == NODE_ORDER, program.events
    exit_event = program.events[-1]
    # exit(worker, code, signal); exitedAfterDisconnect; isDead(); gone from cluster.workers
    assert exit_event == ["exit", 1, code, sig, asked, True, False, "dead"]
    assert ["disconnect", 1, True] in program.events  # still in workers until it has exited too


def test_cluster_disconnect_calls_back_once_every_worker_has_left():
    program = run_to_end("cluster_disconnect", workers=2)
    for worker in (1, 2):
        assert program.names(worker) == NODE_ORDER, program.events
        assert ["exit", worker, 0, None, True, True, False, "dead"] in program.events
    assert program.events[-1] == ["done", 0]


def test_closing_the_last_user_releases_the_handle():
    program = run_to_end("close")
    assert ["released", True] in program.events  # nobody listens on the port any more


@pytest.mark.parametrize("policy", ["rr", "none"])
def test_worker_serves_http_and_a_raw_tcp_echo(policy):
    program = Program(SCENARIO="serve", WORKERS="2", LISTEN=TWO, SOCKSERVE_SCHED_POLICY=policy)
    try:
        assert program.wait("ready"), program.events
        listens = [e for e in program.events if e[0] == "listening"]
        assert len(listens) == 4 and len(program.ports()) == 2  # port 0: one port per key, shared
        http_port = listens[0][2]["port"]
        echo_port = next(p for p in program.ports() if p != http_port)
        bodies = {http_get(http_port)[1] for _ in range(6)}
        assert all(b.startswith("hello from worker ") for b in bodies)
        if policy == "rr":
            assert len(bodies) == 2  # both workers take turns
        # rr runs the service's C hand-off when it is built (shared accepts nothing in the primary)
        assert ["native", policy == "rr" and native.available()] in program.events
        with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as conn:
            conn.sendall(b"ping\n" * 1000)
            conn.shutdown(socket.SHUT_WR)
            got = b"".join(iter(lambda: conn.recv(65536), b""))
        assert got == b"ping\n" * 1000
        workers = [int(p) for p in _children(program.proc.pid)]
        held = set().union(*(socket_inodes(pid) for pid in workers)) & listening_socket_inodes()
        assert len(held) == (2 if policy == "none" else 0)  # shared: workers accept themselves
    finally:
        assert terminate(program.proc) == 0


@pytest.mark.skipif(not shutil.which("systemd-socket-activate"), reason="needs systemd-socket-activate")
def test_the_same_script_takes_systemds_named_socket_or_binds_its_own():
    """listen(app, name="http", port=P): systemd's socket named http when passed, else P."""
    own, passed = free_port(), free_port()
    env = {"SCENARIO": "serve", "LISTEN": f"http:name=http,port={own},host=127.0.0.1"}
    alone = Program(**env)
    try:
        assert alone.wait("ready"), alone.events
        assert http_get(own)[1] == "hello from worker 1\n"
    finally:
        assert terminate(alone.proc) == 0
    program = Program("systemd-socket-activate", "-l", f"127.0.0.1:{passed}", "--fdname=http",
                      "-E", "PYTHONPATH", *[a for k in env for a in ("-E", k)], **env)
    try:
        assert wait_for(lambda: connects(passed), 10)  # the first connection starts the program
        assert program.wait("ready"), (program.events, program.proc.stderr)
        http = next(e for e in program.events if e[0] == "listening")
        assert http[2] == {"address": "127.0.0.1", "port": passed, "address_type": 4, "name": "http"}
        assert http_get(passed)[1] == "hello from worker 1\n"
        assert not connects(own)  # systemd's socket, not a bind of its own
    finally:
        program.proc.send_signal(signal.SIGTERM)
        assert program.exit_code() == 0


def _children(pid: int) -> list[str]:
    return open(f"/proc/{pid}/task/{pid}/children").read().split()


def test_setup_primary_fork_env_and_scheduling_policy(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "apps" / "cluster_setup.py")], cwd=ROOT,
                          env=program_env(WORKER_CWD=str(tmp_path)),
                          capture_output=True, text=True, timeout=40)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert events[:2] == [["setup", ["one"], True], ["setup", ["two"], False]]
    reports = {e[1]: e[2] for e in events if e[0] == "message"}
    # cwd, args and fork(env) reach the worker; cwd stays for later forks (Node's settings)
    assert reports[1] | {"port": 0} == {"cwd": str(tmp_path), "argv": ["one"], "extra": "1",
                                        "shared": True, "port": 0}
    assert reports[2]["argv"] == ["two"] and reports[2]["extra"] is None
    assert all(r["shared"] for r in reports.values())  # cluster.scheduling_policy = SCHED_NONE
    assert "noise from worker 2" in proc.stdout and "noise from worker 1" not in proc.stdout  # silent
    assert sorted(e[1:] for e in events if e[0] == "exit") == [[1, 0], [2, 0]]


@pytest.mark.parametrize("native", ["1", "0"])
def test_the_other_listener_serves_on_after_a_release(native):
    """Releasing a handle under the C engine moves the primary to the Python path for good."""
    program = Program(SCENARIO="close_one", WORKERS="1", LISTEN=TWO, SOCKSERVE_NATIVE=native)
    try:
        assert program.wait("ready"), program.events
        assert ["released", True] in program.events
        echo_port = [e for e in program.events if e[0] == "listening"][1][2]["port"]
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as conn:
                conn.sendall(b"still here")
                conn.shutdown(socket.SHUT_WR)
                assert b"".join(iter(lambda: conn.recv(65536), b"")) == b"still here"
    finally:
        assert terminate(program.proc) == 0


def test_unix_socket_listener_and_its_file_removed_at_release(tmp_path):
    path = tmp_path / "app.sock"
    program = Program(SCENARIO="serve", WORKERS="2", LISTEN=f"http:path={path}")
    try:
        assert program.wait("ready"), program.events
        assert [e[2]["address_type"] for e in program.events if e[0] == "listening"] == [-1, -1]
        bodies = set()
        for _ in range(4):
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(str(path))
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                bodies.add(b"".join(iter(lambda c=conn: c.recv(65536), b"")).split(b"\r\n\r\n")[1])
        assert bodies == {b"hello from worker 1\n", b"hello from worker 2\n"}
    finally:
        assert terminate(program.proc) == 0
    assert not path.exists()  # the last worker left: the handle and its file are gone


def test_a_worker_with_only_a_message_listener_stays_until_disconnected():
    program = Program(SCENARIO="ping", WORKERS="1", LISTEN="")
    assert program.exit_code() == 0, program.proc.stderr.read()
    program.read_to_end()
    assert ["message", 1, "pong"] in program.events  # alive after main() returned, answering
    assert program.events[-1] == ["exit", 1, 0, None, True, True, False, "dead"]


def test_the_primary_respawns_only_when_the_program_forks_from_exit():
    program = Program(SCENARIO="respawn", WORKERS="1")  # worker 1 crashes; "exit" forks worker 2
    try:
        assert program.wait("ready"), program.events
        assert ["exit", 1, 3, None, False, True, False, "dead"] in program.events
        # worker 1 was the handle's only user: worker 2 gets a new random port (as in Node)
        port = next(e[2]["port"] for e in program.events if e[0] == "listening" and e[1] == 2)
        assert http_get(port)[1] == "hello from worker 2\n"
    finally:
        assert terminate(program.proc) == 0
    assert program.names().count("fork") == 2


@pytest.mark.parametrize("mode, lines", [
    ("fork_after", ["worker 1 main done", "exit 1 code=0 sig=None"]),  # e4 FORK_AFTER=1
    ("task", ["worker 1 main done", "message 1 task done", "exit 1 code=0 sig=None"]),
    # cluster.disconnect() while the worker's main() still waits (verifier: both workers hung
    # "disconnecting" and the primary with them when Ctrl-C came during their boot)
    ("disconnect_waiting", ["message 1 ready", "exit 1 code=0 sig=None", "disconnected"]),
    ("disconnect_listening", ["message 1 ready", "exit 1 code=0 sig=None", "disconnected"]),
])
def test_a_worker_whose_main_returns_without_listening_exits_once_idle(mode, lines):
    # Node: a worker with no server, no 'message' listener and nothing pending exits at once;
    # sockserve's own tasks (heartbeats) must not keep it; the program's own task does
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "apps" / "cluster_idle.py")],
                          cwd=ROOT, env=program_env(MODE=mode),
                          capture_output=True, text=True, timeout=15)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == lines, proc.stdout + proc.stderr


IDLE_WORKER = """
from sockserve import cluster
async def main():
    if cluster.is_primary:
        cluster.on("exit", lambda w, code, sig: print(f"exit {w.id} code={code} sig={sig}", flush=True))
        cluster.fork()
    else:
        print(f"worker {cluster.worker.id} main done", flush=True)
cluster.run(main)
"""


def test_a_worker_whose_main_returns_without_listening_exits_and_so_does_the_primary(tmp_path):
    """Node: a worker holding no server, IPC listener nor pending work ends; the primary with no
    worker left ends too.  The worker's own heartbeat task once kept it alive for ever."""
    script = tmp_path / "idle.py"
    script.write_text(IDLE_WORKER)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, text=True,
                            env=program_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running after 20 s: {out!r} {err[-500:]!r}")
    assert proc.returncode == 0, err
    assert out.splitlines() == ["worker 1 main done", "exit 1 code=0 sig=None"], (out, err)


def test_listen_on_a_port_another_process_holds_is_one_line_per_worker_and_exit_1():
    """Node's workers die of an unhandled EADDRINUSE; here each worker prints one line naming
    the address and the reason (no stack: it is not the program's bug) and exits 1, and the
    primary, which outlives its workers' mistakes, ends 0 once they are gone."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        program = Program(WORKERS="2", LISTEN=f"http:port={port},host=127.0.0.1")
        assert program.exit_code() == 0
        stderr = program.proc.stderr.read()
    program.read_to_end()
    assert sorted(stderr.splitlines()) == [
        f"sockserve: error: worker {n}: listen 127.0.0.1:{port}: Address already in use"
        for n in (1, 2)], stderr
    assert sorted(e[1:3] for e in program.events if e[0] == "exit") == [[1, 1], [2, 1]], program.events


KILL_ON_ONLINE = """
import sockserve
from sockserve import cluster
from tests.apps.sample import wsgi_app
async def main():
    if cluster.is_primary:
        cluster.on("exit", lambda w, code, sig: print(f"exit {w.id} code={code} sig={sig}", flush=True))
        cluster.on("online", lambda w: w.kill())
        for _ in range(4):
            cluster.fork()
    else:
        await sockserve.listen(wsgi_app, 0, "127.0.0.1")
        print(f"worker {cluster.worker.id} still listening", flush=True)
cluster.run(main)
"""


def test_worker_kill_from_the_online_listener_kills_every_worker(tmp_path):
    """Node: ``worker.kill()`` is SIGTERM and the worker dies of it, whenever it comes.  A
    SIGTERM that came just after ``Online`` was caught by a handler about to be removed and
    dropped (explorer: 2 to 4 workers of 4 served on, the primary never ended)."""
    script = tmp_path / "kill_on_online.py"
    script.write_text(KILL_ON_ONLINE)
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=program_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [f"exit {n} code=None sig=SIGTERM" for n in range(1, 5)], \
        proc.stdout + proc.stderr


RESPAWN_FROM_EXIT = """
import sockserve
from sockserve import cluster
from tests.apps.sample import wsgi_app
async def main():
    if cluster.is_primary:
        def on_exit(worker, code, sig):  # Node's docs, under the 'exit' event: replace the dead
            again = cluster.fork()
            print(f"exit {worker.id} code={code}; fork -> dead={again.is_dead()} "
                  f"known={again.id in cluster.workers}", flush=True)
        cluster.on("exit", on_exit)
        cluster.on("listening", lambda w, a: print(f"listening {w.id}", flush=True))
        for _ in range(2):
            cluster.fork()
    else:
        await sockserve.listen(wsgi_app, 0, "127.0.0.1")
cluster.run(main)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_ends_although_the_exit_listener_forks_again(tmp_path, sig):
    """Node's documented respawn (``cluster.on("exit", ... cluster.fork())``) must not keep a
    stopping primary alive: each worker that left was replaced, the replacements disconnected,
    replaced again... (explorer: SIGTERM, two SIGTERMs and Ctrl-C all hung until SIGKILL)."""
    script = tmp_path / "respawn.py"
    script.write_text(RESPAWN_FROM_EXIT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=program_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: sum(line.startswith("listening") for line in lines) == 2, 20), lines
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C: the whole group
        else:
            proc.send_signal(sig)
        code = proc.wait(20)
    finally:
        terminate(proc, 1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group it made (its workers), if it hung
    reader.join(10)
    assert code == 0, proc.stderr.read()
    assert sorted(line.strip() for line in lines if line.startswith("exit")) == [
        f"exit {n} code=0; fork -> dead=True known=False" for n in (1, 2)], lines


ASYNC_LISTENERS = """
import asyncio
from sockserve import cluster
async def main():
    if cluster.is_primary:
        async def on_message(worker, message):
            await asyncio.sleep(0.01)
            print(f"primary got {message}", flush=True)
            if message == "pong":
                worker.disconnect()
        async def on_exit(worker, code, sig):
            await asyncio.sleep(0.01)
            print(f"exit {worker.id} code={code}", flush=True)
        async def failing(worker, code, sig):
            raise RuntimeError("an async listener's mistake")
        cluster.on("message", on_message).on("exit", on_exit).on("exit", failing)
        cluster.fork().send("ping")
    else:
        async def on_ping(message):
            await asyncio.sleep(0.01)
            cluster.worker.send("pong")
        cluster.worker.on("message", on_ping)
cluster.run(main)
"""


def test_async_def_listeners_run_in_the_primary_and_in_a_worker(tmp_path):
    """Node runs an async function given as a listener; its body here never ran (explorer:
    only "coroutine ... was never awaited").  An async listener's exception is logged, one
    "failed" line with its traceback, and the primary still ends 0."""
    script = tmp_path / "async_listeners.py"
    script.write_text(ASYNC_LISTENERS)
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=program_env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["primary got pong", "exit 1 code=0"], proc.stdout + proc.stderr
    assert "'exit' listener" in proc.stderr and "failed" in proc.stderr, proc.stderr
    assert "RuntimeError: an async listener's mistake" in proc.stderr
    assert "never awaited" not in proc.stderr, proc.stderr
