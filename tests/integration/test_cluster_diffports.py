"""sockserve.cluster when workers listen on different addresses (verifier v15 e1): one
rotation per handle under SCHED_RR, as Node's RoundRobinHandle, so each address is served by
the workers listening on it; SCHED_NONE serves them too.  A handle one worker closes stays
served by the others; the last close releases it, and the primary stays on the C path."""

from __future__ import annotations

import collections
import subprocess
import sys
import threading

import pytest
from conftest import ROOT, connects, free_port, http_get, program_env, terminate, wait_for, worker_of

from sockserve.master import native

pytestmark = pytest.mark.timeout(90)
ROUNDS = 12  # requests per check, each on a new connection


class Program:
    """tests/apps/cluster_diffports.py running: its stdout lines, stderr lines, stdin."""

    def __init__(self, layout: str, policy: str) -> None:
        self.a, self.b = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "apps" / "cluster_diffports.py")], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**program_env(), "POLICY": policy, "LAYOUT": layout,
                 "PORT_A": str(self.a), "PORT_B": str(self.b)})
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=lambda s=stream, i=into: i.extend(x.strip() for x in s),
                                          daemon=True)
                         for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    def read_to_end(self, timeout: float = 10) -> None:
        """Every line read: the readers meet EOF once the primary and its workers are gone."""
        for reader in self._readers:
            reader.join(timeout)

    def line(self, prefix: str) -> str:
        assert wait_for(lambda: any(x.startswith(prefix) for x in self.out), 15), (self.out, self.err)
        return next(x for x in self.out if x.startswith(prefix))

    def close_b(self, worker_id: int) -> str:
        self.tell(f"close {worker_id}")
        return self.line(f"closed {worker_id}")

    def tell(self, line: str) -> None:
        self.proc.stdin.write(f"{line}\n")
        self.proc.stdin.flush()

    def answers(self, port: int) -> set[str]:
        """Who answered ROUNDS requests on ``port`` (each must be answered, within 5 s)."""
        got = set()
        for _ in range(ROUNDS):
            status, body = http_get(port)
            assert status == 200, (port, status, body)
            got.add(body.strip())
        return got


def _native_expected(policy: str) -> bool:
    return policy == "rr" and native.available()


@pytest.mark.parametrize("policy", ["rr", "none"])
def test_workers_listening_on_different_ports_each_serve_their_own(policy):
    # verifier v15 e1: worker 1 on port A only, worker 2 on port B only.  Before the rotation
    # per handle, SCHED_RR served neither (both waited in the kernel's backlog) and warned.
    program = Program("split", policy)
    try:
        assert program.line("ready") == f"ready native={_native_expected(policy)}"
        assert program.answers(program.a) == {"w1"}
        assert program.answers(program.b) == {"w2"}
    finally:
        assert terminate(program.proc) == 0
    program.read_to_end()  # a warning printed last is in program.err
    assert not [line for line in program.err if "warning" in line], program.err


def test_a_mix_both_on_a_only_worker_2_on_b():
    program = Program("mix", "rr")
    try:
        program.line("ready")
        assert program.answers(program.a) == {"w1", "w2"}  # A's rotation: both, in turn
        assert program.answers(program.b) == {"w2"}  # B's: worker 2 alone
    finally:
        assert terminate(program.proc) == 0


def test_a_dead_worker_leaves_each_rotation_and_its_own_handle_is_released():
    # mix: worker 2 alone on B, both on A.  Its death takes it out of A's rotation (worker 1
    # serves A alone) and releases B (its last user), on the C path still
    program = Program("mix", "rr")
    try:
        program.line("ready")
        program.tell("kill 2")
        assert program.line("exit 2") == f"exit 2 native={_native_expected('rr')}"
        assert wait_for(lambda: not connects(program.b), 5)
        assert program.answers(program.a) == {"w1"}
    finally:
        assert terminate(program.proc) == 0


@pytest.mark.parametrize("policy", ["rr", "none"])
def test_a_handle_one_worker_closes_stays_served_by_the_others(policy):
    program = Program("release", policy)
    try:
        program.line("ready")
        if policy == "rr":  # rr's rotation: both, in turn (the kernel may favour one under none)
            assert program.answers(program.a) == program.answers(program.b) == {"w1", "w2"}
        assert program.close_b(1) == f"closed 1 native={_native_expected(policy)}"
        assert program.answers(program.b) == {"w2"}  # worker 1 left B's rotation only...
        if policy == "rr":
            assert program.answers(program.a) == {"w1", "w2"}  # ...not A's
        # the last user closes B: the handle is released (Node closes it), the port refuses,
        # and the primary keeps the C path (the engine forgets the listener)
        assert program.close_b(2) == f"closed 2 native={_native_expected(policy)}"
        assert wait_for(lambda: not connects(program.b), 5)
        served = program.answers(program.a)  # every request answered; by both under rr
        assert served == {"w1", "w2"} if policy == "rr" else served <= {"w1", "w2"}
    finally:
        assert terminate(program.proc) == 0


def test_the_service_still_serves_every_listener_from_every_worker(start_server):
    # the service joins each worker to every listener's rotation: each listener's connections
    # split evenly between the two workers, as with the one rotation before
    other = free_port()
    server = start_server("--workers", "2", "--bind", f"127.0.0.1:{other}")
    counts = {port: collections.Counter() for port in (server.port, other)}
    for n in range(200):
        port = (server.port, other)[n % 2]
        status, body = http_get(port)
        assert status == 200, body
        counts[port][worker_of(body)] += 1
    for port, split in counts.items():
        assert sorted(split) == [1, 2] and all(40 <= n <= 60 for n in split.values()), (port, counts)
    assert server.status()["native"] is native.available()
