"""How a worker sets up what it was handed (worker/handed.py): plain connections at once, in the
callback that sent their ack (no task each); TLS and PROXY-header ones in a task of their own.

One real worker process, the master's side played over a real SEQPACKET channel: records for
two listeners with different apps, one of them a PROXY listener, read in one pass with a
Disconnect behind them.  Each connection must get its own listener's app (the PROXY one after
its header, with the header's addresses), every ack must come before any answer, and the
drain must wait for both kinds of set-up before the worker exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
from collections.abc import Iterator

import pytest
from workerharness import WorkerUnderTest, accepted_pair, http_request, listener, read_response

from sockserve.cluster import protocol
from sockserve.eventloop import new_event_loop
from sockserve.worker.handed import Handed

pytestmark = pytest.mark.timeout(60)
KEYS = ("http", "probe")
APPS = {"http": "tests.apps.sample:asgi_app", "probe": "tests.apps.proxy_probe:asgi"}
PER_KEY = 3
HEADER = b"PROXY TCP4 192.0.2.1 198.51.100.7 5555 80\r\n"


@pytest.fixture
def worker() -> Iterator[WorkerUnderTest]:
    w = WorkerUnderTest(keys=list(KEYS), apps=APPS, proxy_protocol=["probe"],
                        forwarded_allow_ips="127.0.0.1")
    yield w
    w.close()


def boot_both(worker: WorkerUnderTest) -> None:
    assert worker.expect(protocol.Online, timeout=15).pid == worker.proc.pid
    asked = {worker.expect(protocol.QueryServer).key for _ in KEYS}
    assert asked == set(KEYS)
    for key in KEYS:
        worker.send(protocol.ServerReply(key, "rr", "127.0.0.1:0"))
    assert {worker.expect(protocol.Listening).key for _ in KEYS} == set(KEYS)


def test_one_pass_for_two_listeners_sets_each_up_with_its_app_then_drains(worker) -> None:
    lsock = listener()
    boot_both(worker)
    pairs = {key: [accepted_pair(lsock) for _ in range(PER_KEY)] for key in KEYS}
    for i, (client, _) in enumerate(pairs["http"]):
        http_request(client, f"/plain{i}", close=True)
    for client, _ in pairs["probe"]:
        client.sendall(HEADER + b"GET /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    seqs = {"http": (1, 2, 3), "probe": (4, 5, 6)}
    os.kill(worker.proc.pid, signal.SIGSTOP)  # all three records wait: read in one pass
    try:
        for key in KEYS:
            worker.send(protocol.NewConn(key, seqs[key]), [conn.fileno() for _, conn in pairs[key]])
        worker.send(protocol.Disconnect())
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    acked: set[int] = set()
    closed: set[str] = set()
    while acked != {1, 2, 3, 4, 5, 6} or closed != set(KEYS):
        msg = worker.recv()
        assert msg is not None, worker.stderr_now()
        if isinstance(msg, protocol.Ack):
            assert msg.accepted, msg
            acked.update(msg.seqs)
        elif isinstance(msg, protocol.Close):
            closed.add(msg.key)
    for key in KEYS:
        for _, conn in pairs[key]:
            conn.close()  # the master's copies: the worker's are the only ones now
    for i, (client, _) in enumerate(pairs["http"]):
        head, body = read_response(client)
        assert head.startswith(b"HTTP/1.1 200") and body.startswith(f"asgi /plain{i} ".encode())
    for client, _ in pairs["probe"]:
        head, body = read_response(client)
        assert head.startswith(b"HTTP/1.1 200") and body == b"192.0.2.1:5555 198.51.100.7:80\n"
    assert worker.wait() == 0
    lsock.close()


def test_a_client_gone_before_set_up_leaves_the_worker_serving(worker) -> None:
    """A handed connection reset before its protocol is set up: the others are served, the
    pending count still reaches 0, and the worker drains and exits 0."""
    lsock = listener()
    boot_both(worker)
    gone_client, gone = accepted_pair(lsock)
    gone_client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone_client.close()  # RST: the worker's socket is dead before it is set up
    client, conn = accepted_pair(lsock)
    http_request(client, "/after", close=True)
    os.kill(worker.proc.pid, signal.SIGSTOP)
    try:
        worker.send(protocol.NewConn("http", (1, 2)), [gone.fileno(), conn.fileno()])
        worker.send(protocol.Disconnect())
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    acked: set[int] = set()
    while acked != {1, 2}:
        msg = worker.recv()
        assert msg is not None, worker.stderr_now()
        if isinstance(msg, protocol.Ack):
            acked.update(msg.seqs)
    gone.close()
    conn.close()
    head, body = read_response(client)
    assert head.startswith(b"HTTP/1.1 200") and body.startswith(b"asgi /after ")
    assert worker.wait() == 0
    lsock.close()


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


class _EchoAdapter:
    ssl = None

    def protocol_factory(self) -> asyncio.Protocol:
        return _Echo()


@pytest.mark.parametrize("make_loop", [asyncio.new_event_loop, new_event_loop], ids=["asyncio", "default"])
def test_set_up_without_a_task_on_each_loop(make_loop) -> None:
    """The task-free set-up (``Handed._step``) on asyncio's loop and on the one workers run
    (uvloop when installed): every connection is served, ``pending`` ends at 0 (``settled``
    returns at once), and no task was made for a plain connection."""
    loop = make_loop()
    lsock = listener()
    handed = Handed(loop, _EchoAdapter(), {})
    clients = []
    try:
        for _ in range(4):
            client, conn = accepted_pair(lsock)
            clients.append(client)
            handed.accepted(conn)
        assert handed.pending == 4 and not asyncio.all_tasks(loop)

        async def settle_then_echo() -> list[bytes]:
            await asyncio.wait_for(handed.settled(5.0), 6.0)
            assert handed.pending == 0
            answers = []
            for i, client in enumerate(clients):
                client.sendall(f"ping{i}".encode())
                answers.append(await loop.sock_recv(client, 16))
            return answers

        for client in clients:
            client.setblocking(False)
        assert loop.run_until_complete(settle_then_echo()) == [f"PING{i}".encode() for i in range(4)]
    finally:
        for client in clients:
            client.close()
        lsock.close()
        loop.close()
