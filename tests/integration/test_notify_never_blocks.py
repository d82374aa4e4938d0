"""sd_notify must never stall the master, even when nobody reads NOTIFY_SOCKET."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest
from conftest import wait_for

from sockserve.systemd.notify import Notifier

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def receiver(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield path, sock
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            return got


def test_a_full_receiver_queue_neither_blocks_nor_loses_what_matters(receiver):
    path, sock = receiver
    notifier = Notifier(path)

    def send_all() -> None:
        for n in range(500):  # far past net.unix.max_dgram_qlen
            notifier.notify(f"STATUS=step {n}")
        notifier.notify("READY=1", "STATUS=ready")

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    sender.join(30)  # a blocking send would wait for a reader that never comes: forever
    assert not sender.is_alive(), "notify blocked on the full receiver queue"
    assert notifier.flush() is False  # still queued: the receiver has not read
    received = drain(sock)
    assert notifier.flush() is True
    received += drain(sock)
    assert received[-1] == "READY=1\nSTATUS=ready"
    assert len(received) < 100  # STATUS lines were coalesced, not all 500 kept


def test_master_serves_while_nobody_reads_its_notify_socket(start_server, receiver):
    path, sock = receiver
    server = start_server("--workers", "2", env={"NOTIFY_SOCKET": path})
    for generation in (2, 3, 4):  # each reload's RELOADING/READY/STATUS pile up unread
        os.kill(server.pid, signal.SIGHUP)
        assert wait_for(lambda g=generation: server.status()["generation"] == g
                        and server.status()["state"] == "running", 60), server.status()
    assert all(server.get()[0] == 200 for _ in range(20))
    lines = "\n".join(drain(sock))
    assert "MAINPID=" in lines and "READY=1" in lines
