"""Resource faults: the master out of fds, workers that cannot start, workers killed as by the OOM killer."""

from __future__ import annotations

import os
import resource
import signal
import socket
import time

import pytest
from conftest import alive, wait_for

pytestmark = pytest.mark.timeout(60)
FAULT_WINDOW = 3.0  # seconds the master spends without fds
OOM_TEXT = "killed by SIGKILL (out of memory? the OOM killer sends SIGKILL)"
CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_accept_backs_off_on_emfile_logs_once_and_recovers(start_server):
    server = start_server("--workers", "2", "--rr-window", "4")
    workers = list(server.worker_pids().values())
    base = len(os.listdir(f"/proc/{server.pid}/fd"))
    _, hard = resource.prlimit(server.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (base + 3, hard))
    for pid in workers:  # nobody acks: the master keeps each fd it accepts
        os.kill(pid, signal.SIGSTOP)
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(20)]
    for client in clients:
        client.sendall(CLOSE_REQUEST)
    time.sleep(0.3)
    cpu_before, wall_before = cpu_seconds(server.pid), time.monotonic()
    time.sleep(FAULT_WINDOW)
    cpu = cpu_seconds(server.pid) - cpu_before
    wall = time.monotonic() - wall_before
    paused_lines = server.stderr().count("accept failed (Too many open files)")
    for pid in workers:
        os.kill(pid, signal.SIGCONT)
    answers = [read_all(client) for client in clients]
    for client in clients:
        client.close()
    print(f"\nEMFILE: master CPU {cpu:.3f}s over {wall:.2f}s; {paused_lines} log line(s); "
          f"accept_paused={server.status()['accept_paused']}")
    assert cpu < 0.1 * wall
    assert paused_lines == 1, server.stderr()
    assert server.status()["accept_paused"] >= FAULT_WINDOW / 0.5 - 1  # it kept retrying, paced
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), [a[:40] for a in answers]
    assert all(server.get()[0] == 200 for _ in range(20))


def test_spawn_failure_is_reported_and_retried_with_backoff(start_server):
    server = start_server("--workers", "2", "--worker-python", "/nonexistent", "--boot-timeout", "4",
                          ready=False)
    code = server.proc.wait(15)
    lines = [line for line in server.stderr().splitlines() if "cannot start worker" in line]
    print(f"\nspawn failures logged in 4s: {len(lines)}; exit code {code}")
    assert "/nonexistent" in lines[0]
    assert 4 <= len(lines) <= 30  # retried, but paced: 0.1 s, 0.2 s, 0.4 s ... per slot
    assert code == 1
    assert "workers did not listen within 4s" in server.stderr().splitlines()[-1]


def _kill_as_oom(server, victim: int, unread_handoffs: bool) -> list[bytes]:
    """SIGKILL ``victim``; with ``unread_handoffs`` first freeze it while requests are handed to it.

    Returns the answers of those requests (they must be re-handed and served).
    """
    clients = []
    if unread_handoffs:  # a worker stuck (swapping, say) with NewConn records it never read
        os.kill(victim, signal.SIGSTOP)
        clients = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(6)]
        for client in clients:
            client.sendall(CLOSE_REQUEST)
        time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    answers = [read_all(client) for client in clients]
    for client in clients:
        client.close()
    return answers


@pytest.mark.parametrize("unread_handoffs", [
    False,
    True,
])
def test_worker_killed_by_sigkill_is_classified_as_possible_oom(start_server, unread_handoffs):
    server = start_server("--workers", "2")
    victim_id, victim = min(server.worker_pids().items())
    answers = _kill_as_oom(server, victim, unread_handoffs)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
    assert wait_for(lambda: victim not in server.worker_pids().values()
                    and len(server.worker_pids()) == 2, 5), server.status()
    assert not alive(victim)
    about = [line for line in server.stderr().splitlines() if f"worker {victim_id} (pid {victim})" in line]
    print(f"\n{about[-1]}")
    assert about[-1].startswith("<4>") and about[-1].endswith(OOM_TEXT), about
    assert not any("replacing it" in line for line in about), about  # not a protocol fault
    assert all(server.get()[0] == 200 for _ in range(10))
