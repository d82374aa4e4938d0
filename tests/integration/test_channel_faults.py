"""A worker that breaks the protocol is replaced; the master serves on."""

from __future__ import annotations

import ctypes
import os
import pathlib
import socket

import pytest
from conftest import wait_for

from sockserve.cluster import protocol

pytestmark = pytest.mark.timeout(60)
SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 (asm-generic)


def steal_channel(pid: int) -> socket.socket:
    """A copy of worker ``pid``'s channel end, taken with pidfd_getfd (needs ptrace rights)."""
    environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    fd = int(next(e for e in environ if e.startswith(b"SOCKSERVE_CHANNEL_FD=")).split(b"=")[1])
    pidfd = os.pidfd_open(pid)
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            pytest.skip(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pidfd)
    return socket.socket(fileno=copy)


@pytest.mark.parametrize("record, fds", [
    (b"\xffgarbage", 0),
    (protocol.encode(protocol.Ack((424242,), True)), 0),  # ack for a seq it was never handed
    (protocol.encode(protocol.Online(1, 1)), 0),  # online twice
    (protocol.encode(protocol.Heartbeat(0, 0)), 2),  # wrong fd count
    (b"\x09" + b" " * (protocol.MAX_RECORD + 10), 0),  # oversized
])
def test_malformed_record_from_a_worker_replaces_it_and_master_serves_on(start_server, record, fds):
    server = start_server("--workers", "2")
    before = server.worker_pids()
    victim_id, victim = min(before.items())
    channel = steal_channel(victim)
    passed = [os.open("/dev/null", os.O_RDONLY) for _ in range(fds)]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, bytes(memoryview(
        (ctypes.c_int * fds)(*passed))))] if fds else []
    try:
        channel.sendmsg([record], ancillary)
    except OSError as exc:  # EMSGSIZE for the oversized one is also a defined outcome
        assert len(record) > protocol.MAX_RECORD, exc
        return
    finally:
        channel.close()
        for fd in passed:
            os.close(fd)
    assert wait_for(lambda: victim not in server.worker_pids().values()
                    and len(server.worker_pids()) == 2, 5), server.status()
    assert server.proc.poll() is None
    assert all(server.get()[0] == 200 for _ in range(20))
    assert "protocol error" in server.stderr()
