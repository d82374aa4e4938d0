"""Micro-benchmark of the rr hand-off path alone: accept -> NewConn + fd -> Ack -> close.

The master's own Dispatcher (accept loop, RoundRobin policy, Channel) hands
every accepted fd to minimal workers that ack and close it (in-process, or
forked with --fork so the CPU figure is the master's alone).  A client process (handoff_client.py) connects
and waits for the close.  Prints connections/s and this process's CPU µs per fd.

    .venv/bin/python bench/handoff.py [--seconds 3] [--workers 2] [--window 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from sockserve.cluster.channel import Channel, socketpair  # noqa: E402
from sockserve.cluster.peer import WorkerPeer  # noqa: E402
from sockserve.cluster.protocol import Ack, Message, NewConn  # noqa: E402
from sockserve.listeners import Listener  # noqa: E402
from sockserve.master.handoff import Dispatcher  # noqa: E402
from sockserve.master.workers import WorkerHandle  # noqa: E402

KEY = "127.0.0.1:0"


class MiniWorker:
    """The worker end: ack every NewConn and close its fd."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.channel = Channel(sock, "master", self._on_message, lambda reason: None)
        self.channel.start(loop)

    def _on_message(self, msg: Message, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        if isinstance(msg, NewConn):
            self.channel.send(Ack(msg.seqs, True))


class MiniMaster:
    """sockserve's real hand-off path (Dispatcher + RoundRobin + Channel), minus the pool."""

    def __init__(self, listener: socket.socket, loop: asyncio.AbstractEventLoop,
                 ends: list[socket.socket], window: int) -> None:
        self.workers: dict[int, WorkerHandle] = {}
        self.dispatcher = Dispatcher(loop, [Listener(KEY, KEY, listener)], "rr", window, self.workers)
        for worker_id, end in enumerate(ends, 1):
            worker = WorkerHandle(id=worker_id, slot=worker_id, generation=1, pid=0, pidfd=-1,
                                  channel=None, peer=WorkerPeer(worker_id, (KEY,)),  # type: ignore[arg-type]
                                  started=0.0, last_seen=0.0)
            worker.channel = Channel(end, "worker", self._receiver(worker), lambda reason: None)
            worker.channel.start(loop)
            self.workers[worker_id] = worker
            self.dispatcher.worker_listening(worker)
        self.dispatcher.start_accepting()

    @property
    def handed(self) -> int:
        return sum(w.counters.accepted for w in self.workers.values())

    def close(self) -> None:
        self.dispatcher.stop_accepting()
        for worker in self.workers.values():
            worker.channel.close()

    def _receiver(self, worker: WorkerHandle):
        def on_message(msg: Message, fds: list[int]) -> None:
            if isinstance(msg, Ack):
                self.dispatcher.ack(worker, msg)
        return on_message


async def measure(ends: list[socket.socket], worker_ends: list[socket.socket], seconds: float,
                  window: int, concurrency: int) -> dict[str, float]:
    """Run the client against a MiniMaster for ``seconds``; counts and rates.

    ``worker_ends`` get in-loop MiniWorkers (empty when the workers were forked).
    """
    loop = asyncio.get_running_loop()
    workers = [MiniWorker(end, loop) for end in worker_ends]
    listener = socket.create_server(("127.0.0.1", 0), backlog=511)
    listener.setblocking(False)
    master = MiniMaster(listener, loop, ends, window)
    client = [sys.executable, str(Path(__file__).with_name("handoff_client.py")),
              str(listener.getsockname()[1]), str(concurrency), str(seconds)]
    cpu0, t0 = time.process_time(), time.monotonic()
    proc = await asyncio.create_subprocess_exec(*client, stdout=subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
    done, failed = (int(x) for x in out.split())
    master.close()
    for worker in workers:
        worker.channel.close()
    listener.close()
    return {"handed": master.handed, "client_done": done, "client_failed": failed,
            "fds_per_s": master.handed / elapsed, "cpu_us_per_fd": cpu * 1e6 / max(1, master.handed)}


def _runner():
    try:
        import uvloop
        return uvloop.run
    except ImportError:
        return asyncio.run


async def _serve_worker(end: socket.socket) -> None:
    closed = asyncio.get_running_loop().create_future()
    worker = MiniWorker(end, asyncio.get_running_loop())
    worker.channel._on_close = lambda reason: closed.done() or closed.set_result(reason)
    await closed


def _fork_worker(end: socket.socket, ours: list[socket.socket]) -> int:
    """A child process serving ``end`` until the master's end closes."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for sock in ours:
                sock.close()
            _runner()(_serve_worker(end))
        except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
            code = 1
        os._exit(code)
    end.close()
    return pid


def run(seconds: float = 3.0, workers: int = 2, window: int = 4, concurrency: int = 64,
        fork: bool = False) -> dict[str, float]:
    """One measurement; ``fork`` puts the workers in child processes, so the CPU figure is the master's."""
    pairs = [socketpair() for _ in range(workers)]
    ends = [ours for ours, _ in pairs]
    children = [_fork_worker(theirs, ends) for _, theirs in pairs] if fork else []
    try:
        return _runner()(measure(ends, [] if fork else [t for _, t in pairs], seconds, window, concurrency))
    finally:
        for sock in ends:
            sock.close()
        for pid in children:
            os.waitpid(pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--fork", action="store_true", help="workers in child processes (master-only CPU)")
    args = parser.parse_args()
    result = run(args.seconds, args.workers, args.window, args.concurrency, args.fork)
    print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
