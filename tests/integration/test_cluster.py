"""The cluster core end to end: real master, real workers, real loopback sockets."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, alive, children, free_port, http_get, in_workers, wait_for, worker_of

pytestmark = pytest.mark.timeout(60)


def test_rr_splits_400_close_requests_evenly_between_two_workers(start_server):
    server = start_server("--workers", "2")
    counts = collections.Counter()
    for _ in range(400):
        status, body = server.get()
        assert status == 200 and body.startswith("hello world from worker")
        counts[worker_of(body)] += 1
    assert len(counts) == 2
    for n in counts.values():
        assert 0.45 <= n / 400 <= 0.55, counts
    stats = server.status()
    assert sum(w["accepted"] for w in stats["workers"]) >= 400


@pytest.mark.parametrize("policy", ["shared", "reuseport"])
def test_shared_and_reuseport_policies_serve(start_server, policy):
    server = start_server("--workers", "2", "--policy", policy)
    workers = collections.Counter(worker_of(server.get()[1]) for _ in range(100))
    assert sum(workers.values()) == 100 and set(workers) <= set(server.worker_pids())


def test_connection_handed_to_a_worker_killed_before_acking_is_served_by_another(start_server):
    server = start_server("--workers", "2", "--rr-window", "1")
    pids = server.worker_pids()
    victim_id, victim = min(pids.items())
    os.kill(victim, signal.SIGSTOP)  # it will never ack what it is handed
    results = []

    def client():
        results.append(http_get(server.port, timeout=10))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    assert wait_for(lambda: _held_by(server, victim_id) >= 1, 5), "victim was handed nothing"
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(10)
    assert len(results) == 4 and all(status == 200 for status, _ in results)
    assert victim_id not in {worker_of(body) for _, body in results}
    assert sum(w["rehanded"] for w in server.status()["workers"]) >= 1


def _held_by(server, worker_id):
    for w in server.status()["workers"]:
        if w["id"] == worker_id:
            return w["handed"] - w["accepted"] - w["rejected"]
    return 0


def test_sigterm_lets_a_slow_request_finish_and_exits_zero(start_server):
    server = start_server("tests.apps.sample:slow_app", "--workers", "2")
    result = []
    t = threading.Thread(target=lambda: result.append(http_get(server.port, "/?s=2", timeout=10)))
    t.start()
    assert wait_for(lambda: in_workers(server) == 1, 5)  # in a worker: a SIGTERM before would refuse it
    server.signal(signal.SIGTERM)
    t.join(10)
    assert result and result[0][0] == 200
    assert server.proc.wait(10) == 0


def test_killed_worker_is_replaced_and_the_replacement_serves(start_server):
    # (the first restart waits 0.1 s of back-off: test_supervision.py; bounds here are hang guards,
    # a loaded box took 6 s to boot workers)
    server = start_server("--workers", "2")
    before = server.worker_pids()
    victim_id, victim = min(before.items())
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: len(set(server.worker_pids()) - set(before)) == 1, 15)
    assert replaced, server.status()
    new_id = (set(server.worker_pids()) - set(before)).pop()
    assert wait_for(lambda: worker_of(server.get()[1]) == new_id, 10)
    exits = [w for w in server.status()["workers"] if w["id"] == new_id]
    assert exits and exits[0]["restarts"] == 1


def test_workers_exit_within_two_seconds_of_a_master_kill(start_server):
    server = start_server("--workers", "2")
    pids = list(server.worker_pids().values())
    server.signal(signal.SIGKILL)
    assert wait_for(lambda: not any(alive(p) for p in pids), 2.0)


def test_unloadable_app_exits_nonzero_fast_with_one_line_naming_the_error():
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "sockserve", "no.such:app", "--workers", "2",
                           "--bind", f"127.0.0.1:{free_port()}", "--log-target", "stderr"],
                          cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert time.monotonic() - started < 5
    assert proc.returncode == 6
    lines = [line for line in proc.stderr.splitlines() if "No module named 'no'" in line]
    assert len(lines) == 1, proc.stderr


@pytest.mark.parametrize("args, words", [
    (["--workers", "0"], "workers"),
    (["--policy", "fifo"], "policy"),
    (["--bind", "nope"], "bind"),
    (["--workers", "x"], "--workers"),
    (["--bind", "192.0.2.1:80"], "bind 192.0.2.1:80"),
])
def test_bad_settings_give_one_line_and_exit_2(args, words):
    proc = subprocess.run([sys.executable, "-m", "sockserve", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr, proc.stderr


def test_hup_starts_a_new_generation_without_errors_under_load(start_server):
    server = start_server("--workers", "2")
    before = set(server.worker_pids().values())
    errors, done = [], threading.Event()

    def load():
        for _ in range(2000):
            if done.is_set():
                return
            try:
                if server.get()[0] != 200:
                    errors.append("status")
            except OSError as exc:
                errors.append(exc)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.3)
    server.signal(signal.SIGHUP)
    assert wait_for(lambda: server.status()["generation"] == 2 and server.status()["state"] == "running", 10)
    assert wait_for(lambda: not before & set(server.worker_pids().values()), 10)
    done.set()
    t.join(30)
    assert errors == []


def test_ttin_and_ttou_add_and_remove_a_worker(start_server):
    server = start_server("--workers", "2")
    server.signal(signal.SIGTTIN)
    assert wait_for(lambda: len(server.worker_pids()) == 3, 5)
    for expected in (2, 1):  # one at a time: the kernel merges a signal sent twice in a row
        server.signal(signal.SIGTTOU)
        assert wait_for(lambda n=expected: len(server.status()["workers"]) == n, 5), server.status()


def test_no_fd_leaks_in_the_master_after_many_connections(start_server):
    server = start_server("--workers", "2")
    server.get()
    before = len(os.listdir(f"/proc/{server.pid}/fd"))
    for _ in range(300):
        assert server.get()[0] == 200
    assert len(os.listdir(f"/proc/{server.pid}/fd")) <= before + 1  # +1: a control connection
    assert set(children(server.pid)) == set(server.worker_pids().values())
