"""A Node program's top level under sockserve.cluster (issue 15, the verifier's findings).

Node runs the whole script in every process: ``cluster.schedulingPolicy = cluster.SCHED_NONE``
and ``cluster.on(...)`` at top level are harmless in a worker, ``cluster.worker.id`` exists as
soon as the module loads there, and the policy is frozen by the first ``setupPrimary`` (the
first ``fork``).  systemd's sockets keep systemd's ``Backlog=`` under every policy: nothing
re-listens an inherited socket.  Real primaries, workers and ``systemd-socket-activate``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import pytest
from conftest import ROOT, connects, free_port, http_get, parsed, program_env, terminate, wait_for
from test_socket_activation import listening_socket_inodes, socket_inodes

pytestmark = pytest.mark.timeout(60)
ENV = {k: v for k, v in program_env().items() if not k.startswith(("SOCKSERVE_", "LISTEN_"))}
needs_activate = pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                                    reason="systemd-socket-activate is not installed")

TOP_LEVEL = """
import json, os
import sockserve
from sockserve import cluster

cluster.scheduling_policy = cluster.SCHED_NONE  # Node's documented top-level usage
cluster.on("exit", lambda worker, code, sig: print(json.dumps(["exit", worker.id, code]), flush=True))
if cluster.is_worker:
    me = cluster.worker  # Node: set as soon as the module loads in a worker
    print(json.dumps(["top", me.id, me.process.pid == os.getpid(), cluster.scheduling_policy,
                      cluster.settings, cluster.workers, hasattr(cluster, "fork")]), flush=True)
    me.send({"hello": me.id})  # before run(): sent once the worker is online

def app(environ, start_response):
    body = f"hello from worker {cluster.worker.id}\\n".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]

async def main():
    if cluster.is_primary:
        cluster.on("message", lambda w, m: print(json.dumps(["message", w.id, m]), flush=True))
        cluster.on("listening", lambda w, a: print(json.dumps(["listening", w.id]), flush=True))
        for _ in range(2):
            cluster.fork()
    else:
        await sockserve.listen(app, int(os.environ["PORT"]), "127.0.0.1")

cluster.run(main)
"""


class Program:
    """A script of this file running; its JSON lines in ``events``."""

    def __init__(self, path, *prefix: str, **env: str) -> None:
        self.proc = subprocess.Popen([*prefix, sys.executable, str(path)], cwd=ROOT, text=True,
                                     env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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

    def count(self, name: str) -> int:
        return [e[0] for e in self.events].count(name)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _script(tmp_path, text: str):
    path = tmp_path / "prog.py"
    path.write_text(text)
    return path


def test_a_node_style_top_level_runs_in_every_worker(tmp_path):
    port = free_port()
    program = Program(_script(tmp_path, TOP_LEVEL), PORT=str(port))
    try:
        assert wait_for(lambda: program.count("listening") == 2, 20), (program.events, program.proc.stderr)
        tops = sorted(e[1:] for e in program.events if e[0] == "top")
        # id and process.pid at import; the policy set there reads back (no effect in a worker,
        # as Node's plain property); the primary's data names are None there, its methods absent
        assert tops == [[1, True, 1, None, None, False], [2, True, 1, None, None, False]]
        assert wait_for(lambda: program.count("message") == 2, 5)
        assert sorted(e[1:] for e in program.events if e[0] == "message") == [
            [1, {"hello": 1}], [2, {"hello": 2}]]
        bodies = {http_get(port)[1] for _ in range(8)}
        assert bodies <= {"hello from worker 1\n", "hello from worker 2\n"} and bodies
        # SCHED_NONE took effect in the primary: the workers hold the listening socket
        workers = _children(program.proc.pid)
        held = set().union(*(socket_inodes(pid) for pid in workers)) & listening_socket_inodes()
        assert len(held) == 1
    finally:
        assert terminate(program.proc) == 0
    program.read_to_end()
    assert program.count("exit") == 2  # the top-level cluster.on("exit") of the primary


LATE = """
import json, os
import sockserve
from sockserve import cluster

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return [b"hi\\n"]

async def main():
    if cluster.is_primary:
        cluster.on("listening", lambda w, a: print(json.dumps(["listening", w.id]), flush=True))
        cluster.setup_primary()  # Node's setupPrimary freezes the policy (rr here)
        cluster.scheduling_policy = cluster.SCHED_NONE  # too late: one warning line
        cluster.fork()
        cluster.scheduling_policy = cluster.SCHED_NONE
        print(json.dumps(["policy", cluster.scheduling_policy]), flush=True)
    else:
        await sockserve.listen(app, int(os.environ["PORT"]), "127.0.0.1")

cluster.run(main)
"""


def test_a_policy_set_after_setup_primary_warns_and_rr_stays(tmp_path):
    port = free_port()
    program = Program(_script(tmp_path, LATE), PORT=str(port))
    try:
        assert wait_for(lambda: program.count("listening") == 1, 20), (program.events, program.proc.stderr)
        assert ["policy", 1] in program.events  # reads back what was set, as Node's property
        assert http_get(port)[1] == "hi\n"
        worker = _children(program.proc.pid)[0]
        assert not socket_inodes(worker) & listening_socket_inodes()  # rr: the primary accepts
    finally:
        assert terminate(program.proc) == 0
    err = program.proc.stderr.read().splitlines()
    warnings = [line for line in err if "scheduling_policy" in line]
    assert len(warnings) == 2, err  # one line per assignment that cannot take effect
    assert warnings[0].startswith("sockserve: warning: cluster.scheduling_policy = 1 after")
    assert warnings[0].endswith("has no effect: it stays SCHED_RR")


NAMED = """
import json
import sockserve
from sockserve import cluster

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "3")])
    return [b"hi\\n"]

async def main():
    if cluster.is_primary:
        cluster.on("listening", lambda w, a: print(json.dumps(["listening", w.id]), flush=True))
        for _ in range(2):
            cluster.fork()
    else:
        await sockserve.listen(app, name="http")

cluster.run(main)
"""


def backlog(port: int) -> int | None:
    """The listening socket's backlog: ``ss``'s Send-Q column for a listener."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    return int(out[2]) if out and out[0] == "LISTEN" else None


@needs_activate
@pytest.mark.parametrize("policy", ["rr", "none"])
def test_library_keeps_systemds_backlog(tmp_path, policy):
    port = free_port()
    program = Program(_script(tmp_path, NAMED), "systemd-socket-activate", "-l", f"127.0.0.1:{port}",
                      "--fdname=http", "-E", "PYTHONPATH", "-E", "SOCKSERVE_SCHED_POLICY",
                      SOCKSERVE_SCHED_POLICY=policy)
    try:
        systemds = wait_for(lambda: backlog(port), 10)
        assert systemds and systemds != 511, systemds  # else this test could not see a change
        assert connects(port)  # starts the program
        assert wait_for(lambda: program.count("listening") == 2, 20), (program.events, program.proc.stderr)
        assert http_get(port)[1] == "hi\n"
        assert backlog(port) == systemds
    finally:
        assert terminate(program.proc) == 0


@needs_activate
@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_service_keeps_systemds_backlog(tmp_path, policy):
    from test_listener_apps import running, start

    port, control = free_port(), str(tmp_path / "control.sock")
    proc = start("-w", "2", "--policy", policy, "--backlog", "64", "--control-socket", control,
                 "tests.apps.sample:wsgi_app", activate=("-l", f"127.0.0.1:{port}"))
    try:
        systemds = wait_for(lambda: backlog(port), 10)
        assert systemds and systemds not in (64, 511), systemds
        assert connects(port)
        assert wait_for(lambda: running(control), 20), proc.stderr
        assert http_get(port)[0] == 200
        assert backlog(port) == systemds  # --backlog is for sockets sockserve binds
    finally:
        assert terminate(proc) == 0
