"""The master's hand-off path, C and Python, on real sockets: the same records, the same closes.

A real Dispatcher on a loopback listener, two workers played by the test on
the other ends of real SEQPACKET channels, real TCP clients.
"""

from __future__ import annotations

import array
import asyncio
import socket

import pytest

from sockserve.cluster import protocol
from sockserve.cluster.channel import Channel, socketpair
from sockserve.cluster.peer import WorkerPeer
from sockserve.cluster.protocol import Ack, NewConn, ProtocolError, UserMessage
from sockserve.listeners import Listener
from sockserve.master import native
from sockserve.master.handoff import Dispatcher
from sockserve.master.workers import WorkerHandle

KEY = "127.0.0.1:0"


@pytest.fixture(params=["python", "c"])
def path(request, monkeypatch):
    if request.param == "c" and native._native is None:
        pytest.skip("sockserve.master._native is not built")
    monkeypatch.setenv("SOCKSERVE_NATIVE", "1" if request.param == "c" else "0")
    return request.param


class Rig:
    """A Dispatcher with ``n`` workers whose ends the test reads and answers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int, window: int) -> None:
        self.loop = loop
        self.listener = socket.create_server(("127.0.0.1", 0))  # blocking, as systemd hands it over
        self.workers: dict[int, WorkerHandle] = {}
        self.dispatcher = Dispatcher(loop, [Listener(KEY, KEY, self.listener)], "rr", window, self.workers)
        self.ends: dict[int, socket.socket] = {}
        self.delivered: list[protocol.Message] = []  # what reached Python's delivery, in order
        self.closed: list[tuple[int, str | None]] = []
        self.errors: list[str] = []
        for wid in range(1, n + 1):
            self.spawn(wid, "rr")
        self.dispatcher.start_accepting()

    def spawn(self, wid: int, mode: str) -> WorkerHandle:
        """Worker ``wid`` of a generation whose policy is ``mode`` starts and listens (pool.py's order)."""
        ours, theirs = socketpair()
        worker = WorkerHandle(id=wid, slot=wid, generation=1, pid=0, pidfd=-1, channel=None,  # type: ignore[arg-type]
                              peer=WorkerPeer(wid, (KEY,)), started=0.0, last_seen=0.0)
        worker.channel = Channel(ours, "worker", lambda m, f, w=worker: self._on(w, m),
                                 lambda r, w=wid: self.closed.append((w, r)))
        worker.channel.start(self.loop)
        self.workers[wid], self.ends[wid] = worker, theirs
        self.dispatcher.assign(wid, mode)
        self.dispatcher.worker_listening(worker)
        return worker

    def _on(self, worker: WorkerHandle, msg: protocol.Message) -> None:
        self.delivered.append(msg)
        if not isinstance(msg, Ack):
            return
        try:
            self.dispatcher.ack(worker, msg)
        except ProtocolError as exc:
            self.errors.append(str(exc))

    def connect(self) -> socket.socket:
        return socket.create_connection(self.listener.getsockname(), timeout=5)

    async def received(self, wid: int, count: int) -> list[tuple[protocol.Message, list[int]]]:
        """The next ``count`` records on worker ``wid``'s end, decoded as the worker would."""
        out, end = [], self.ends[wid]
        end.setblocking(False)
        for _ in range(500):
            while len(out) < count:
                try:
                    data, anc, flags, _ = end.recvmsg(protocol.MAX_RECORD, socket.CMSG_SPACE(64))
                except BlockingIOError:
                    break
                fds = array.array("i")
                for _, _, chunk in anc:
                    fds.frombytes(chunk)
                out.append((protocol.decode(data, len(fds), "master"), list(fds)))
            if len(out) >= count:
                return out
            await asyncio.sleep(0.01)
        raise AssertionError(f"worker {wid} got {len(out)} records, expected {count}")

    def ack(self, wid: int, seqs: tuple[int, ...], accepted: bool = True) -> None:
        self.ends[wid].send(protocol.encode(Ack(seqs, accepted)))

    def close(self) -> None:
        self.dispatcher.close()
        for wid, worker in self.workers.items():
            worker.channel.close()
            self.ends[wid].close()


def sees_eof(client: socket.socket) -> bool:
    client.settimeout(2)
    try:
        return client.recv(1) == b""
    except TimeoutError:
        return False


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_each_connection_is_handed_once_and_closed_by_the_master_after_the_ack(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 2, 8)
        clients = [rig.connect() for _ in range(6)]
        got = []
        for wid in (1, 2):
            for msg, fds in await rig.received(wid, 1):
                assert isinstance(msg, NewConn) and msg.key == KEY and len(fds) == len(msg.seqs)
                got += [(wid, seq, fd) for seq, fd in zip(msg.seqs, fds, strict=True)]
                rig.ack(wid, msg.seqs)
        assert sorted(w for w, _, _ in got) in ([1, 2] * 3, [1, 1, 1, 2, 2, 2])
        await asyncio.sleep(0.1)
        counts = {w.id: (w.counters.handed, w.counters.accepted) for w in rig.workers.values()}
        assert counts == {1: (3, 3), 2: (3, 3)} and rig.dispatcher.waiting() == 0
        for _, _, fd in got:
            socket.socket(fileno=fd).close()  # the worker's copy: the last one, so each client sees EOF
        assert all(sees_eof(c) for c in clients)
        rig.close()
    run(main())


def test_a_bad_seq_in_an_ack_still_releases_the_seqs_before_it(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 1, 8)
        client = rig.connect()
        ((msg, fds),) = await rig.received(1, 1)
        rig.ack(1, (*msg.seqs, 10**6))  # a faulty worker; what it acked first is its own
        for _ in range(100):
            if rig.errors:
                break
            await asyncio.sleep(0.01)
        assert rig.errors == [f"ack for seq {10**6}, which worker 1 does not hold"]
        socket.socket(fileno=fds[0]).close()
        assert sees_eof(client), "the master kept its copy of an acked connection"
        rig.close()
    run(main())


def test_hand_offs_queue_behind_records_a_full_channel_holds(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 1, 8)
        channel = rig.workers[1].channel
        sent = 0
        while channel.pending == 0:  # fill the socket buffer until the channel queues
            channel.send(UserMessage(sent))
            sent += 1
        client = rig.connect()
        await asyncio.sleep(0.2)
        assert channel.pending >= 2  # the NewConn waits behind the queued record
        records = await rig.received(1, sent + 1)
        assert [m.payload for m, _ in records[:sent]] == list(range(sent))
        msg, fds = records[sent]
        assert isinstance(msg, NewConn) and len(fds) == 1 and rig.workers[1].counters.handed == 1
        rig.ack(1, msg.seqs)
        await asyncio.sleep(0.1)
        socket.socket(fileno=fds[0]).close()
        assert sees_eof(client)
        rig.close()
    run(main())


def test_a_dead_workers_unacked_connections_go_to_another_worker(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 2, 8)
        clients = [rig.connect() for _ in range(2)]
        first = {wid: await rig.received(wid, 1) for wid in (1, 2)}
        for _, fds in first[1]:
            for fd in fds:
                socket.socket(fileno=fd).close()  # worker 1 dies holding it, unacked
        rig.dispatcher.worker_gone(rig.workers[1])
        ((msg, fds),) = await rig.received(2, 1)
        assert isinstance(msg, NewConn) and rig.workers[2].counters.rehanded == 1
        rig.ack(2, first[2][0][0].seqs)
        rig.ack(2, msg.seqs)
        await asyncio.sleep(0.1)
        for fd in [*first[2][0][1], *fds]:
            socket.socket(fileno=fd).close()
        assert all(sees_eof(c) for c in clients) and rig.dispatcher.waiting() == 0
        rig.close()
    run(main())


def test_records_around_acks_reach_the_channel_in_order_and_eof_closes_it(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 1, 8)
        clients = [rig.connect() for _ in range(2)]
        records = await rig.received(1, 1)
        while sum(len(m.seqs) for m, _ in records) < 2:
            records += await rig.received(1, 1)
        (s1, s2), fds = [s for m, _ in records for s in m.seqs], [f for _, fs in records for f in fs]
        end = rig.ends[1]
        end.send(protocol.encode(UserMessage("before")))
        end.send(protocol.encode(Ack((s1,), True)))  # canonical: the C path takes it
        end.send(bytes((Ack.code,)) + f"[ [{s2}], true ]".encode())  # valid JSON, not canonical
        end.send(protocol.encode(UserMessage("after")))
        for _ in range(100):
            if len([m for m in rig.delivered if isinstance(m, UserMessage)]) == 2:
                break
            await asyncio.sleep(0.01)
        kinds = [type(m).__name__ for m in rig.delivered]
        acks = ["Ack"] if path == "c" else ["Ack", "Ack"]  # C takes the canonical one itself
        want = ["UserMessage", *acks, "UserMessage"]
        assert kinds == want and rig.delivered[0].payload == "before"
        assert rig.workers[1].counters.accepted == 2 and rig.dispatcher.waiting() == 0
        for fd in fds:
            socket.socket(fileno=fd).close()
        assert all(sees_eof(c) for c in clients)
        end.close()
        for _ in range(100):
            if rig.closed:
                break
            await asyncio.sleep(0.01)
        assert rig.closed == [(1, None)]
        rig.ends[1] = socket.socket()  # closed above; rig.close closes this one
        rig.close()
    run(main())


def test_a_full_window_leaves_connections_in_the_kernel_queue_until_an_ack(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 1, 1)
        clients = [rig.connect() for _ in range(3)]
        ((first, fds),) = await rig.received(1, 1)
        await asyncio.sleep(0.2)
        assert rig.dispatcher.waiting() == 1  # the other two were not even accepted
        rig.dispatcher.stop_accepting()
        rig.ack(1, first.seqs)
        await asyncio.sleep(0.2)
        assert rig.dispatcher.waiting() == 0  # room, but not accepting: still in the kernel
        rig.dispatcher.start_accepting()
        got = [first, *[m for m, _ in await rig.received(1, 1)]]
        rig.ack(1, got[1].seqs)
        got += [m for m, _ in await rig.received(1, 1)]
        assert [len(m.seqs) for m in got] == [1, 1, 1] and len({m.seqs for m in got}) == 3
        rig.close()
        for c in clients:
            c.close()
    run(main())


def test_reloads_rr_shared_rr_leave_the_c_path_and_come_back_losing_no_connection(path):
    async def main():
        rig = Rig(asyncio.get_running_loop(), 2, 1)
        assert rig.dispatcher.native is (path == "c")  # rr and never changed: C's hot path
        clients = [rig.connect() for _ in range(2)]
        held = {wid: (await rig.received(wid, 1))[0] for wid in (1, 2)}  # one each, unacked
        rig.spawn(3, "shared")  # a reload's worker with another policy: the Python path from now
        assert rig.dispatcher.native is False and rig.dispatcher.policy.mode == "rr"
        rig.ack(1, held[1][0].seqs)  # read by the channel now, not by C
        for _ in range(100):
            if rig.workers[1].counters.accepted:
                break
            await asyncio.sleep(0.01)
        assert [type(m).__name__ for m in rig.delivered] == ["Ack"]
        rig.dispatcher.switch("shared")  # the new generation was promoted
        late = rig.connect()
        await asyncio.sleep(0.1)
        assert rig.dispatcher.waiting() == 1  # worker 2's; the late one waits in the kernel
        rig.dispatcher.worker_gone(rig.workers[1])
        rig.dispatcher.worker_gone(rig.workers[2])  # dies unacked: the retired rr policy closes it
        assert rig.dispatcher.waiting() == 0 and list(rig.dispatcher.policy.policies) == ["shared"]
        for _, fds in held.values():
            socket.socket(fileno=fds[0]).close()
        assert all(sees_eof(c) for c in clients)
        rig.spawn(4, "rr")  # and a reload back to rr: the late one is handed once it is in effect
        rig.dispatcher.switch("rr")
        rig.dispatcher.worker_gone(rig.workers[3])  # shared retired: rr alone, the C path again
        assert rig.dispatcher.native is (path == "c") and rig.dispatcher.policy.mode == "rr"
        ((msg, fds),) = await rig.received(4, 1)
        rig.ack(4, msg.seqs)
        await asyncio.sleep(0.1)
        assert rig.delivered[1:] == ([] if path == "c" else [Ack(msg.seqs, True)])  # C read that ack
        assert rig.workers[4].counters.accepted == 1 and rig.dispatcher.waiting() == 0
        socket.socket(fileno=fds[0]).close()
        assert sees_eof(late)
        rig.close()
    run(main())
