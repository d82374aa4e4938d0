"""A real worker at its fd limit, and a real worker whose channel is backed up; the test is the master.

Issue 10: a NewConn that arrives with MSG_CTRUNC (the worker's fd table is full) was a
protocol error (the worker exited, resetting every connection it held); and an ack queued
behind user messages left a worker reading connections the master had not released, so a
death re-handed connections whose requests were already consumed (the clients hung).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time

import pytest
from workerharness import WorkerUnderTest, accepted_pair, http_request, read_response

from sockserve.cluster import protocol

pytestmark = pytest.mark.timeout(60)
APP = "tests.apps.pressure:app"
FLOOD = 300  # user messages of ~32 KiB: far more than the channel's socket buffer holds


def get(client: socket.socket, path: str = "/") -> bytes:
    http_request(client, path)
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def set_nofile(pid: int, soft: int) -> None:
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def lowest_free_fd(pid: int) -> int:
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return next(n for n in range(len(used) + 1) if n not in used)


def test_newconn_at_the_fd_limit_is_rejected_and_held_connections_are_served(start, lsock):
    worker = start(app=APP, heartbeat_interval=0.1)
    held = worker.handed_client(lsock)
    assert get(held) == b"worker 7\n"
    set_nofile(worker.proc.pid, worker.open_fds() + 2)  # room for 2 of the next 8 fds
    pairs = [accepted_pair(lsock) for _ in range(8)]
    seqs = tuple(range(2, 10))
    worker.send(protocol.NewConn("http", seqs), [conn.fileno() for _, conn in pairs])
    ack = worker.expect(protocol.Ack)
    assert ack == protocol.Ack(seqs, False)  # every one rejected: the master re-hands them
    assert worker.proc.poll() is None, worker.stderr_now()
    assert get(held) == b"worker 7\n"  # what it held before is still served
    assert any(beat.paused for beat in worker.heartbeats)
    set_nofile(worker.proc.pid, 1024)
    deadline = time.monotonic() + 5
    while not (worker.heartbeats and not worker.heartbeats[-1].paused) and time.monotonic() < deadline:
        _pump(worker)
    assert not worker.heartbeats[-1].paused, worker.heartbeats[-3:]
    client, conn = pairs[0]
    assert worker.hand_off(conn, seq=10).accepted  # room again: it takes connections
    assert get(client) == b"worker 7\n"


def _pump(worker: WorkerUnderTest) -> None:
    """Read records for a moment (heartbeats are kept aside by the harness)."""
    with contextlib.suppress(TimeoutError):
        worker.recv(0.2)


def _flood_then_hand(worker: WorkerUnderTest, lsock: socket.socket, path: str) -> tuple[list, list, object]:
    """Fill the worker's outbound channel with user messages, then hand it 8 connections
    whose clients already sent ``path``: (clients, the master's copies, the flooding client)."""
    held = worker.handed_client(lsock)
    assert get(held, f"/flood?n={FLOOD}") == b"flooded\n"
    pairs = [accepted_pair(lsock) for _ in range(8)]
    for client, _ in pairs:
        http_request(client, path, close=True)
    worker.send(protocol.NewConn("http", tuple(range(2, 10))), [conn.fileno() for _, conn in pairs])
    time.sleep(0.5)
    return [client for client, _ in pairs], [conn for _, conn in pairs], held


def test_an_ack_overtakes_queued_user_messages(start, lsock):
    worker = start(app=APP)
    clients, conns, _ = _flood_then_hand(worker, lsock, "/")
    before = 0
    while True:
        msg = worker.recv(5)
        if isinstance(msg, protocol.Ack):
            break
        assert isinstance(msg, protocol.UserMessage), msg
        before += 1
    print(f"\nuser messages read before the ack: {before} of {FLOOD} queued")
    assert msg == protocol.Ack(tuple(range(2, 10)), True)
    assert before < FLOOD // 4  # only what was already in the socket buffer
    for conn in conns:
        conn.close()
    for client in clients:
        head, _ = read_response(client)
        assert head.startswith(b"HTTP/1.1 200"), head


def test_a_worker_dying_with_a_backed_up_channel_leaves_unacked_connections_unread(start, lsock):
    first = start(app=APP)
    clients, conns, _ = _flood_then_hand(first, lsock, "/slow?s=0.5")
    first.proc.kill()
    first.proc.wait(5)
    acked: set[int] = set()
    try:
        while (msg := first.recv(2)) is not None:  # read the dead worker's channel dry
            if isinstance(msg, protocol.Ack):
                acked.update(msg.seqs)
    except ConnectionResetError:  # it died with records of ours unread: the end too
        pass
    rehand = [(seq, conn) for seq, conn in zip(range(2, 10), conns, strict=True) if seq not in acked]
    second = start(worker_id=8, app=APP)
    second.boot("rr")
    for seq, conn in rehand:  # what the master does: re-hand every un-acked connection
        assert second.hand_off(conn, seq=seq).accepted
    answered = 0
    for client in clients:
        try:
            head, _ = read_response(client, timeout=8)
        except (TimeoutError, AssertionError, ConnectionError):
            continue
        answered += head.startswith(b"HTTP/1.1 200")
    print(f"\nacked before the death: {len(acked)}; re-handed {len(rehand)}; answered {answered}/8")
    assert answered == len(rehand) == 8 - len(acked)


def test_a_listening_socket_that_cannot_be_received_is_one_clear_error(start, lsock):
    """The other record that carries an fd (shared: ServerReply): out of fds is an exit with
    a reason, not a protocol error blamed on the master."""
    worker = start(app=APP)
    worker.expect(protocol.Online, timeout=15)
    assert worker.expect(protocol.QueryServer) == protocol.QueryServer("http")
    set_nofile(worker.proc.pid, lowest_free_fd(worker.proc.pid))  # no fd number left below it
    worker.send(protocol.ServerReply("http", "shared", "127.0.0.1:0"), [lsock.fileno()])
    assert worker.wait(10) == 1
    stderr = worker.proc.stderr.read().decode(errors="replace")
    assert "cannot receive ServerReply's fd: the fd table is full" in stderr, stderr
    assert "protocol error" not in stderr and "Traceback" not in stderr, stderr
