"""Connections handed over just before ``Disconnect`` are served, not dropped.

Found by the max_requests recycling test (1 or 2 requests in 200-400 lost, EOF): the
worker took the fds (Ack accepted), but their protocols were not set up yet
(``connect_accepted_socket`` still pending) when the Disconnect started the drain,
which saw no connection and exited.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from workerharness import WorkerUnderTest, accepted_pair, http_request, listener, read_response

from sockserve.cluster import protocol

pytestmark = pytest.mark.timeout(60)
BATCH = protocol.MAX_FDS


@pytest.fixture
def worker() -> Iterator[WorkerUnderTest]:
    w = WorkerUnderTest()
    yield w
    w.close()


def test_a_full_batch_then_disconnect_in_one_pass_is_answered(worker) -> None:
    lsock = listener()
    worker.boot("rr")
    pairs = [accepted_pair(lsock) for _ in range(BATCH)]
    for client, _ in pairs:
        http_request(client, "/", close=True)  # every request waits on its socket already
    os.kill(worker.proc.pid, signal.SIGSTOP)  # both records wait: the worker reads them in one pass
    try:
        worker.send(protocol.NewConn("http", tuple(range(1, BATCH + 1))), [c.fileno() for _, c in pairs])
        worker.send(protocol.Disconnect())
    finally:
        os.kill(worker.proc.pid, signal.SIGCONT)
    got = [worker.recv(), worker.recv()]  # Close (sent at once) and Ack (batched), either order
    assert protocol.Ack(tuple(range(1, BATCH + 1)), True) in got and protocol.Close("http") in got
    for _, conn in pairs:
        conn.close()
    for client, _ in pairs:
        head, body = read_response(client)
        assert head.startswith(b"HTTP/1.1 200") and body.startswith(b"hello world from worker 7")
    assert worker.wait() == 0
    lsock.close()
