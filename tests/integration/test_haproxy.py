"""Three sockserve hosts behind a real HAProxy, drained and weighted by their agents (issue 16).

Each host is a sockserve master on its own port with ``--agent`` and ``--drain-delay``;
HAProxy (haproxyharness.py) checks each agent every 200 ms.  First the weights follow
the hosts' load (connections held on one host); then, under a bounded wrk load through
HAProxy, one host reloads, one is stopped gracefully (SIGTERM) and one is killed -9 with
its workers.  HAProxy's log says which host served or failed each request; the figures
are printed (docs/scaling.md quotes them).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT, alive, children, free_port, terminate, wait_for

from tests.haproxyharness import HAProxy, Host, missing_reason

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")
LOAD_SECONDS = 30  # at most: wrk is stopped (SIGINT) once h3 is DOWN


@pytest.fixture
def haproxy(tmp_path):
    started: list[HAProxy] = []

    def start(hosts: list[Host], **options: str) -> HAProxy:
        started.append(HAProxy(tmp_path, hosts, **options))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def three_hosts(start_server, *args: str):
    servers, hosts = [], []
    for name in ("h1", "h2", "h3"):
        agent = free_port()
        servers.append(start_server("--workers", "2", "--agent", f"127.0.0.1:{agent}", *args))
        hosts.append(Host(name, servers[-1].port, agent))
    return servers, hosts


def hold(port: int, count: int) -> list[socket.socket]:
    """``count`` keep-alive connections straight to a host, each after one request."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        held.append(sock)
    return held


def test_haproxy_weights_follow_the_hosts_load(start_server, haproxy):
    servers, hosts = three_hosts(start_server, "--limit-concurrency", "10", "--timeout-keep-alive", "30")
    proxy = haproxy(hosts)
    full = {"h1": ("UP", 100), "h2": ("UP", 100), "h3": ("UP", 100)}
    assert wait_for(lambda: proxy.weights() == full, 10), proxy.weights()
    held = hold(servers[0].port, 10)  # half of h1's 2 × 10 slots
    try:
        assert wait_for(lambda: proxy.weights()["h1"] == ("UP", 50), 5), proxy.weights()
        assert proxy.weights()["h2"] == ("UP", 100)
    finally:
        for sock in held:
            sock.close()
    assert wait_for(lambda: proxy.weights() == full, 5), proxy.weights()


def run_wrk(port: int, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(["wrk", "-t2", "-c12", f"-d{seconds}s", "--timeout", "5s",
                             f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def kill_host(server) -> None:
    """SIGKILL the master and its workers, by PID (processes this test started)."""
    pids = [server.pid, *children(server.pid)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    server.proc.wait(5)
    assert wait_for(lambda: not any(alive(p) for p in pids[1:]), 5)


def test_reload_and_graceful_stop_fail_nothing_and_a_kill_only_what_it_held(start_server, haproxy):
    servers, hosts = three_hosts(start_server, "--drain-delay", "1")
    proxy = haproxy(hosts)
    assert wait_for(lambda: all(s == "UP" for s, _ in proxy.weights().values()), 10), proxy.weights()
    seen = proxy.watch()
    wrk = run_wrk(proxy.port, LOAD_SECONDS)
    began = time.monotonic()
    time.sleep(1.5)
    servers[0].signal(signal.SIGHUP)  # h1 reloads: drain while its new generation boots
    assert wait_for(lambda: servers[0].status()["generation"] == 2, 15)
    time.sleep(1.5)
    servers[1].signal(signal.SIGTERM)  # h2 stops gracefully: drain 1 s, then stop
    assert servers[1].proc.wait(20) == 0
    time.sleep(1)
    kill_host(servers[2])  # h3 is killed -9
    assert wait_for(lambda: proxy.weights()["h3"][0] == "DOWN", 5), proxy.weights()
    time.sleep(0.5)
    assert wrk.poll() is None, "wrk ended before the kill: the schedule did not fit in LOAD_SECONDS"
    wrk.send_signal(signal.SIGINT)  # wrk stops and prints its figures
    out, _ = wrk.communicate(timeout=15)
    elapsed = time.monotonic() - began
    proxy.stop()
    figures = proxy.figures()
    failed = figures["failed"]
    wrk_total = int(re.search(r"(\d+) requests in", out).group(1))
    print(f"\nhaproxy figures ({elapsed:.1f}s of wrk -t2 -c12, wrk completed {wrk_total}): {figures}; "
          f"server states seen in show stat: {seen}")
    print(out)
    assert figures["sent"] > 1000 and wrk_total > 1000
    assert failed.get("h1", 0) == 0, figures  # the reload
    assert failed.get("h2", 0) == 0, figures  # the graceful stop
    assert failed.get("h3", 0) <= 12, figures  # the kill: at most wrk's 12 connections in flight
    assert set(failed) <= {"h1", "h2", "h3"}, figures  # nothing failed without a host (<NOSRV>)
    drain = "DRAIN (agent)"  # HAProxy's status when the agent said drain
    assert drain in seen["h1"] and seen["h1"][-1] == "UP", seen  # the agent drained the reload
    assert drain in seen["h2"] and "MAINT" in seen["h2"][seen["h2"].index(drain):], seen
    assert "DOWN" in seen["h3"], seen  # the health check found the killed host
    served = figures["served"]
    assert served["h2"] > 0 and served["h3"] > 0 and served["h1"] > served["h2"]


def test_a_host_in_maint_comes_back_when_a_new_master_answers(start_server, haproxy, tmp_path):
    """HAProxy keeps asking the agent of a server it holds in MAINT: the next master's
    ``up ready`` brings it back (only the agent can undo what the agent did)."""
    first = start_server("--workers", "1", "--agent", f"127.0.0.1:{(agent := free_port())}",
                         "tests.apps.sample:slow_app")
    proxy = haproxy([Host("h1", first.port, agent)])
    assert wait_for(lambda: proxy.weights()["h1"] == ("UP", 100), 10), proxy.weights()
    with socket.create_connection(("127.0.0.1", first.port), timeout=10) as slow:
        slow.sendall(b"GET /?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")  # the stop waits for it
        time.sleep(0.2)
        first.signal(signal.SIGTERM)
        assert wait_for(lambda: proxy.weights()["h1"][0] == "MAINT", 5), proxy.weights()
        answer = b""
        while chunk := slow.recv(65536):  # "connection: close" while stopping
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"slept 2.0\n"), answer
    assert first.proc.wait(20) == 0
    argv = [sys.executable, "-m", "sockserve", "--bind", f"127.0.0.1:{first.port}", "--workers", "1",
            "--agent", f"127.0.0.1:{agent}", "--control-socket", str(tmp_path / "again.sock")]
    again = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: proxy.weights()["h1"] == ("UP", 100), 10), proxy.weights()
    finally:
        assert terminate(again) == 0


def test_limit_concurrency_behind_the_documented_config_answers_no_503(start_server, haproxy):
    """docs/scaling.md's HAProxy config with ``limit_concurrency 10`` on each host (2 workers):
    wrk -c12 through HAProxy, each host reloading in turn, and not one 503 (HAProxy queues at
    the server's ``maxconn`` instead, and retries a 503 elsewhere: ``retry-on``)."""
    servers, hosts = three_hosts(start_server, "--limit-concurrency", "10", "--drain-delay", "1")
    proxy = haproxy(hosts, extra_server=" maxconn 10")  # docs/scaling.md: what one worker admits
    assert wait_for(lambda: all(s == "UP" for s, _ in proxy.weights().values()), 10), proxy.weights()
    wrk = run_wrk(proxy.port, 8)
    for server in servers:  # each host reloads in turn: the others take its share meanwhile
        time.sleep(1.5)
        server.signal(signal.SIGHUP)
        assert wait_for(lambda s=server: s.status()["generation"] == 2, 15)
    out, _ = wrk.communicate(timeout=30)
    proxy.stop()
    figures = proxy.figures()
    statuses = Counter(status for _, status, _, _ in proxy.requests())
    print(f"\nlimit_concurrency 10, wrk -t2 -c12 -d8s, each host reloads: {figures}; statuses {statuses}")
    assert figures["sent"] > 1000, figures
    assert statuses.get(503, 0) == 0 and figures["failed"] == {}, (statuses, figures)
