"""Worker CPU per connection, from taking it to a set-up protocol: rr hand-off vs shared accept.

    .venv/bin/python bench/worker_setup.py                 # bursts of 8, 300 rounds, 3 runs
    .venv/bin/python bench/worker_setup.py --per-record 8  # the master batching 8 fds a record

One process, one loop (uvloop when installed), sockserve's real ``Worker`` with a bare
protocol (no app): per round the master's side is played in the same process *before* the
measured span (rr: ``burst`` loopback connections accepted and handed in NewConn records of
``per_record`` fds; shared: ``burst`` connects queued on a listener the worker accepts on),
then the loop runs until every protocol's ``connection_made`` has run and the worker's
``pending`` is 0.  The loop thread's CPU time over that span / ``burst`` is printed: the
worker-side cost of the hand-off (read, decode, socket, ack, set-up) against its own accept.
Thread CPU time is far less noisy on a shared box than wrk's req/s; wake-ups between
processes are not in it (bench/ab.py measures those, with the per-process µs/req columns).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's sockserve

from sockserve.cluster import protocol  # noqa: E402
from sockserve.eventloop import new_event_loop  # noqa: E402
from sockserve.worker.fdpressure import Acceptor  # noqa: E402
from sockserve.worker.runtime import Worker  # noqa: E402

KEY = "tcp:127.0.0.1:0"


class _Made(asyncio.Protocol):
    """Counts set-ups; wakes the round when ``want`` are made."""

    made: list[asyncio.BaseTransport] = []
    want = 0
    done: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        _Made.made.append(transport)
        if len(_Made.made) == _Made.want and _Made.done is not None and not _Made.done.done():
            _Made.done.set_result(None)


class _Adapter:
    ssl = None
    open = 0
    served = 0

    def protocol_factory(self) -> asyncio.Protocol:
        return _Made()

    async def startup(self) -> None:
        return None


async def _span(worker: Worker, burst: int, clients: list[socket.socket]) -> float:
    """CPU µs per connection until ``burst`` protocols are up and nothing is pending."""
    _Made.want, _Made.done = burst, asyncio.get_running_loop().create_future()
    start = time.thread_time_ns()
    await _Made.done
    while worker.handed.pending:
        await asyncio.sleep(0)
    spent = (time.thread_time_ns() - start) / burst / 1000
    for transport in _Made.made:
        transport.abort()
    for client in clients:
        client.close()
    _Made.made.clear()
    for _ in range(6):  # the aborts' callbacks, outside the next span
        await asyncio.sleep(0)
    return spent


async def _rr(worker: Worker, master: socket.socket, lsock: socket.socket, burst: int, per: int) -> float:
    clients, conns = [], []
    for _ in range(burst):
        clients.append(socket.create_connection(lsock.getsockname()))
        conns.append(lsock.accept()[0])
    for i in range(0, burst, per):
        chunk = conns[i:i + per]
        fds = array.array("i", [c.fileno() for c in chunk])
        master.sendmsg([protocol.encode(protocol.NewConn(KEY, tuple(range(i + 1, i + 1 + len(chunk)))))],
                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    for conn in conns:
        conn.close()
    spent = await _span(worker, burst, clients)
    try:
        while master.recv(protocol.MAX_RECORD):  # the acks
            pass
    except BlockingIOError:
        pass
    return spent


async def _shared(worker: Worker, lsock: socket.socket, burst: int) -> float:
    clients = [socket.create_connection(lsock.getsockname()) for _ in range(burst)]
    return await _span(worker, burst, clients)


def run(burst: int, rounds: int, per: int) -> tuple[float, float]:
    """(rr, shared) median worker CPU µs per connection over ``rounds`` interleaved rounds."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    master, end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    worker = Worker(1, {"keys": [KEY], "heartbeat_interval": 3600}, end, _Adapter(), loop)
    worker._channel.start(loop)
    worker._on_message(protocol.ServerReply(KEY, "rr"), [])
    loop.run_until_complete(asyncio.sleep(0.05))
    master.setblocking(False)
    master.recv(protocol.MAX_RECORD)  # Listening
    handed = socket.create_server(("127.0.0.1", 0), backlog=4096)
    own = socket.create_server(("127.0.0.1", 0), backlog=4096)
    own.setblocking(False)
    Acceptor(loop, own, worker.fds, lambda: 0, lambda conn: worker.handed.accepted(conn, KEY)).start()

    async def rounds_() -> tuple[list[float], list[float]]:
        rr, shared = [], []
        for _ in range(rounds):
            rr.append(await _rr(worker, master, handed, burst, per))
            shared.append(await _shared(worker, own, burst))
        return rr, shared

    gc.disable()
    try:
        rr, shared = loop.run_until_complete(rounds_())
    finally:
        gc.enable()
        for sock in (master, handed, own):
            sock.close()
        loop.close()
    return statistics.median(rr), statistics.median(shared)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="worker CPU per connection: rr hand-off vs shared accept")
    parser.add_argument("--burst", type=int, default=8, help="connections per round")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--per-record", type=int, default=1, help="fds per NewConn record (1..8)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    per = max(1, min(protocol.MAX_FDS, args.per_record))
    print(f"worker CPU µs per connection, bursts of {args.burst}, {per} fd(s) per NewConn, "
          f"median of {args.rounds} rounds")
    for n in range(args.runs):
        rr, shared = run(args.burst, args.rounds, per)
        print(f"run {n + 1}: rr hand-off {rr:.1f}  shared accept {shared:.1f}  rr/shared {rr / shared:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
