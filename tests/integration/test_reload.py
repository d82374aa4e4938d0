"""Blocking reload over the control socket: success, and failure that keeps the old generation."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import ROOT, wait_for

pytestmark = pytest.mark.timeout(60)


def reload(server) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sockserve", "reload", "--wait",
                           "--control-socket", server.control], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


def test_reload_with_a_broken_app_fails_and_the_old_workers_keep_serving(start_server, tmp_path):
    config = tmp_path / "sockserve.toml"
    config.write_text("workers = 2\n")
    server = start_server("--config", str(config))
    before = server.worker_pids()

    config.write_text('workers = 2\napp = "no.such:app"\n')
    failed = reload(server)
    assert failed.returncode == 1
    assert "No module named 'no'" in failed.stderr and "generation 1 keeps serving" in failed.stderr
    assert server.worker_pids() == before
    assert server.get()[0] == 200 and server.status()["generation"] == 1

    config.write_text("workers = 3\n")
    done = reload(server)
    assert done.returncode == 0, done.stderr
    after = server.worker_pids()
    assert len(after) == 3 and not set(after.values()) & set(before.values())
    assert server.status()["state"] == "running"


def test_reload_with_an_invalid_config_file_fails_with_the_reason(start_server, tmp_path):
    config = tmp_path / "sockserve.toml"
    config.write_text("workers = 1\n")
    server = start_server("--config", str(config))
    config.write_text("workers = [\n")
    failed = reload(server)
    assert failed.returncode == 1 and "invalid TOML" in failed.stderr
    assert server.get()[0] == 200


def test_served_requests_survive_a_reload_in_the_totals(start_server):
    server = start_server("--workers", "2")
    for _ in range(10):
        server.get()
    assert reload(server).returncode == 0
    assert server.status()["served"] >= 10


def keepalive_client(port: int, stop, errors: list, served: list) -> None:
    """Back-to-back requests on one connection; a new one when the server says close."""
    import socket

    sock = None
    while not stop.is_set() and len(served) < 200_000:
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                pending = b""
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            while b"\r\n\r\n" not in pending:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("EOF before a response")
                pending += chunk
            head, _, rest = pending.partition(b"\r\n\r\n")
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n")
                          if h.lower().startswith(b"content-length"))
            while len(rest) < length:
                rest += sock.recv(65536)
            pending = rest[length:]
            served.append(1)
            if b"connection: close" in head.lower():
                sock.close()
                sock = None
        except OSError as exc:
            errors.append(repr(exc))
            sock = None
    if sock is not None:
        sock.close()


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_reloads_under_keepalive_load_reset_no_connection(start_server, policy):
    import threading

    server = start_server("--workers", "2", "--policy", policy)
    stop, errors, served = threading.Event(), [], []
    clients = [threading.Thread(target=keepalive_client, args=(server.port, stop, errors, served))
               for _ in range(8)]
    for t in clients:
        t.start()
    try:
        for _ in range(3):
            started = time.monotonic()
            assert reload(server).returncode == 0
            assert time.monotonic() - started < 20  # a hang guard; the time is in bench/
    finally:
        stop.set()
        for t in clients:
            t.join(10)
    assert len(served) > 100 and errors == []


@pytest.mark.parametrize("native", ["1", "0"], ids=["c", "python"])
def test_reloads_that_change_policy_under_load_lose_no_connection(start_server, tmp_path, native):
    """rr (the C hot path when built) -> shared -> rr, one request per connection all along."""
    from sockserve.master.native import available
    from tests.loadclient import Load

    config = tmp_path / "sockserve.toml"
    config.write_text('workers = 2\npolicy = "rr"\n')
    server = start_server("--config", str(config), env={"SOCKSERVE_NATIVE": native})
    with Load(server.port, threads=4, max_requests=20_000, seconds=30) as load:
        for policy in ("shared", "rr"):
            config.write_text(f'workers = 2\npolicy = "{policy}"\n')
            assert reload(server).returncode == 0
            assert server.status()["policy"] == policy
        # rr alone again: the C path (when built and not turned off), under the same load
        want = native == "1" and available()
        assert wait_for(lambda: server.status()["native"] is want, 10), server.status()
    result = load.result
    assert len(result.outcomes) > 50 and not result.failed, result.summary()
