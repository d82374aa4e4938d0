"""A real master whose worker hits its fd limit (``prlimit`` on the worker's pid) under load.

rr: the worker rejects what it cannot hold, the master re-hands it elsewhere and stops
handing to it until it says it has room; nothing it held is lost, and it is not killed.
shared: the worker stops accepting (libuv would accept and reset), says ``paused`` in its
heartbeats, and the master replaces it after worker_timeout.
"""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest
from conftest import alive, wait_for
from workerharness import read_response

from tests.loadclient import run_load

pytestmark = pytest.mark.timeout(90)
APP = "tests.apps.pressure:app"


def set_nofile(pid: int, soft: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def at_limit(pid: int) -> None:
    """Leave ``pid`` no free fd number: the next fd handed to it is dropped (MSG_CTRUNC)."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    set_nofile(pid, next(n for n in range(len(used) + 1) if n not in used))


def keepalive_on(port: int, worker_id: int, tries: int = 40) -> socket.socket:
    """A keep-alive connection that worker ``worker_id`` serves."""
    for _ in range(tries):
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        if get(client) == f"worker {worker_id}\n":
            return client
        client.close()
    raise AssertionError(f"no connection landed on worker {worker_id} in {tries} tries")


def get(client: socket.socket, path: str = "/") -> str:
    """One keep-alive request on ``client``: the body of its 200 answer."""
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


def worker_stats(server, worker_id: int) -> dict:
    return next(w for w in server.status()["workers"] if w["id"] == worker_id)


def test_rr_worker_at_its_fd_limit_loses_nothing_and_comes_back(start_server):
    server = start_server(APP, "--workers", "2")
    (victim, pid), (other, _) = sorted(server.worker_pids().items())
    held = keepalive_on(server.port, victim)
    at_limit(pid)
    result = run_load(server.port, threads=4, max_requests=400, seconds=20)
    stats = worker_stats(server, victim)
    print(f"\nrr, worker {victim} at its fd limit: {result.summary()}; its counters {stats}")
    assert result.ok == len(result.outcomes) == 400, result.summary()
    assert stats["rejected"] >= 1 and stats["pid"] == pid and alive(pid)
    assert stats["fd_paused"] and not worker_stats(server, other)["fd_paused"]  # sockserve status --json
    assert all(f"worker {other}" in o.body for o in result.outcomes)  # it got nothing meanwhile
    assert get(held) == f"worker {victim}\n"  # what it held is still served
    accepted = stats["accepted"]
    set_nofile(pid, 1024)
    assert wait_for(lambda: (run_load(server.port, threads=2, max_requests=20).ok == 20
                             and worker_stats(server, victim)["accepted"] > accepted), 10, 0.2)
    assert "protocol error" not in server.stderr()
    held.close()


def test_shared_worker_at_its_fd_limit_stops_accepting_and_is_replaced(start_server):
    server = start_server(APP, "--workers", "2", "--policy", "shared", "--worker-timeout", "3")
    (victim, pid), (other, _) = sorted(server.worker_pids().items())
    at_limit(pid)
    assert wait_for(lambda: worker_stats(server, victim)["fd_paused"], 10)  # its heartbeat measured it
    result = run_load(server.port, threads=4, max_requests=300, seconds=2.5)
    print(f"\nshared, worker {victim} at its fd limit: {result.summary()}")
    assert not result.failed, result.summary()  # bounded by the test: none may fail
    assert not any(f"worker {victim}\n" == o.body for o in result.outcomes)
    assert wait_for(lambda: victim not in server.worker_pids() and not alive(pid), 15), server.stderr()
    assert "out of fds for over 3s (worker_timeout); replacing it" in server.stderr()
    assert wait_for(lambda: len(server.worker_pids()) == 2, 10)
    after = run_load(server.port, threads=2, max_requests=100, seconds=10)
    assert after.ok == 100, after.summary()
    assert {o.body for o in after.outcomes} - {f"worker {other}\n"}  # the new worker serves too


def test_shared_accept_that_hits_emfile_leaves_the_connection_to_another_worker(start_server):
    """No heartbeat has probed since the limit dropped: the worker's estimate still says room,
    so its accept() itself fails (EMFILE); the connection stays queued for the other worker."""
    server = start_server(APP, "--workers", "2", "--policy", "shared")
    (victim, pid), _ = sorted(server.worker_pids().items())
    at_limit(pid)
    result = run_load(server.port, threads=4, max_requests=200, seconds=5)
    print(f"\nshared, accept at EMFILE: {result.summary()}")
    assert not result.failed, result.summary()
    assert wait_for(lambda: worker_stats(server, victim)["fd_paused"], 5)
    assert alive(pid)


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_a_worker_out_of_fds_past_worker_timeout_is_recycled_and_finishes_its_requests(start_server, policy):
    """Replaced the way a recycle is (successor first, then it drains), never SIGKILLed."""
    server = start_server(APP, "--workers", "2", "--policy", policy, "--worker-timeout", "2")
    (victim, pid), _ = sorted(server.worker_pids().items())
    client = keepalive_on(server.port, victim)
    client.sendall(b"GET /slow?s=8 HTTP/1.1\r\nHost: x\r\n\r\n")  # in flight in the victim
    time.sleep(0.3)
    at_limit(pid)
    assert wait_for(lambda: f"worker {victim} recycled (fd_pressure)" in server.stderr(), 7.5), \
        server.stderr()
    head, body = read_response(client, timeout=15)  # answered after its successor listened
    assert head.startswith(b"HTTP/1.1 200") and body == b"slow done\n", (head, body)
    client.close()
    assert wait_for(lambda: not alive(pid), 10)
    assert "SIGKILL" not in server.stderr() and len(server.worker_pids()) == 2, server.stderr()
