"""Round-robin scheduling (Node's SCHED_RR), pure: methods return actions.

One rotation per listener key, as Node keeps one ``RoundRobinHandle`` per address in
lib/internal/cluster/primary.js ``handles``: a worker joins the rotation of key K when it
listens on K (``add(worker, K)``) and leaves it on Close K (``stop(worker, K)``), on a
pause or a disconnect (``stop(worker)``: every key) and on its death (``remove``).  A
connection accepted on K goes only to a worker in K's rotation: the one with room in its
window of un-acked hand-offs that K has handed the fewest so far (ties in rotation order).
A worker skipped while its window was full (descheduled, busy) catches up as soon as it
has room, so the split stays even in count without ever waiting for a slow worker; a
worker that joins K starts level with K's others instead of owed every connection so far.

The window is per worker, over every key: the worker's backlog and fd budget are one, and
its acks carry seqs, not keys (a window per key would let a worker hold ``window`` x keys).
Node's ``RoundRobinHandle.handoff`` waits for each reply: one in flight per worker per handle.

The master keeps its copy of a connection until the worker acks ``accepted``; a reject (the
worker leaves K's rotation: it is closing K) or the worker's death before its ack puts the
connection back at the head of the queue, for K's rotation only.  A connection whose K has
nobody in rotation waits (never lost) until someone joins K, or until K is released
(``forget``: Node's ``RoundRobinHandle.remove`` closing its pending handles).

Connections and keys are opaque tokens here; the master maps them to sockets.  The service
has one key per listener and every worker joins all of them (docs/contracts.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from ..cluster.protocol import ProtocolError

DEFAULT_KEY = ""  # the key of add/distribute when none is given (one listener)


@dataclass(frozen=True, slots=True)
class Handoff:
    """Send ``conn`` to ``worker_id`` under ``seq`` (in a NewConn)."""

    worker_id: int
    seq: int
    conn: Hashable
    rehand: bool  # it went to another worker before


@dataclass(frozen=True, slots=True)
class Release:
    """Close the master's copy of ``conn``: the worker owns it now, or its key was released."""

    conn: Hashable


Action = Handoff | Release


class RoundRobin:
    mode = "rr"

    def __init__(self, window: int = 1) -> None:
        self.window = window
        # key -> worker -> hand-offs of that key (catching up after a skip); dict order is the
        # rotation order, next first.  A key is known from its first add/distribute to forget.
        self._rotations: dict[Hashable, dict[int, int]] = {}
        self._inflight: dict[int, dict[int, tuple[Hashable, Hashable]]] = {}  # worker -> seq -> (conn, key)
        self._owner: dict[int, int] = {}  # seq -> worker
        self._queue: deque[tuple[Hashable, Hashable, bool]] = deque()  # (conn, key, rehand), waiting
        self._seq = 0

    @property
    def _handed(self) -> dict[Hashable, dict[int, int]]:
        """key -> worker -> hand-offs, for the workers in each key's rotation (tests)."""
        return {key: dict(rotation) for key, rotation in self._rotations.items()}

    # ------------------------------------------------------------ workers
    def add(self, worker_id: int, key: Hashable = DEFAULT_KEY) -> list[Action]:
        """``worker_id`` listens on ``key``: it takes that key's connections from now on."""
        self._inflight.setdefault(worker_id, {})
        rotation = self._rotations.setdefault(key, {})
        if worker_id not in rotation:
            rotation[worker_id] = min(rotation.values(), default=0)
        return self._drain()

    def stop(self, worker_id: int, key: Hashable | None = None) -> list[Action]:
        """No new hand-offs of ``key`` (None: of any key) to ``worker_id``; its un-acked
        ones await their acks."""
        for k, rotation in self._rotations.items():
            if key is None or k == key:
                rotation.pop(worker_id, None)
        return self._drain()

    def remove(self, worker_id: int) -> list[Action]:
        """``worker_id`` is gone: every connection it had not acked is re-handed."""
        for rotation in self._rotations.values():
            rotation.pop(worker_id, None)
        lost = self._inflight.pop(worker_id, {})
        released: list[Action] = []
        for seq in sorted(lost, reverse=True):
            del self._owner[seq]
            released += self._requeue(*lost[seq])
        return released + self._drain()

    def forget(self, key: Hashable) -> list[Action]:
        """``key`` is released (its listener closed): its queued connections are closed
        (Release), and so is each of its in-flight ones a worker rejects or dies holding."""
        self._rotations.pop(key, None)
        gone = [Release(conn) for conn, k, _ in self._queue if k == key]
        self._queue = deque(item for item in self._queue if item[1] != key)
        return gone  # type: ignore[return-value]

    # ------------------------------------------------------------ connections
    def distribute(self, conn: Hashable, key: Hashable = DEFAULT_KEY) -> list[Action]:
        """``conn`` was accepted on ``key``: queue it and hand out what fits."""
        self._rotations.setdefault(key, {})
        self._queue.append((conn, key, False))
        return self._drain()

    def ack(self, worker_id: int, seq: int, accepted: bool) -> list[Action]:
        if self._owner.get(seq) != worker_id:
            raise ProtocolError(f"ack for seq {seq}, which worker {worker_id} does not hold")
        del self._owner[seq]
        conn, key = self._inflight[worker_id].pop(seq)
        if accepted:
            return [Release(conn), *self._drain()]
        return self._requeue(conn, key) + self.stop(worker_id, key)  # it says no: closing key

    def _requeue(self, conn: Hashable, key: Hashable) -> list[Action]:
        if key not in self._rotations:  # released meanwhile
            return [Release(conn)]
        self._queue.appendleft((conn, key, True))
        return []

    # ------------------------------------------------------------ state
    def capacity(self, key: Hashable | None = None) -> int:
        """How many more hand-offs of ``key`` its rotation can take now; None: the room of
        every worker in some rotation (each counted once), less everything queued."""
        if key is None:
            members = {w for rotation in self._rotations.values() for w in rotation}
            return sum(self.window - len(self._inflight[w]) for w in members) - len(self._queue)
        free = sum(self.window - len(self._inflight[w]) for w in self._rotations.get(key, ()))
        return free - sum(1 for item in self._queue if item[1] == key)

    def drain_queue(self) -> list[tuple[Hashable, Hashable]]:
        """The queued (conn, key)s (waiting for room), oldest first, taken out of the policy:
        a retired policy hands them to the one in effect (policy_switch.py)."""
        conns = [(conn, key) for conn, key, _ in self._queue]
        self._queue.clear()
        return conns

    def waiting(self) -> int:
        """Connections accepted but not yet handed (queued) or not yet acked."""
        return len(self._queue) + len(self._owner)

    def _drain(self) -> list[Action]:
        """Hand out the queue in order; what its key's rotation has no room for stays, in order."""
        actions: list[Action] = []
        kept: deque[tuple[Hashable, Hashable, bool]] = deque()
        while self._queue:
            conn, key, rehand = item = self._queue.popleft()
            worker_id = self._next_worker(key)
            if worker_id is None:
                kept.append(item)
                continue
            self._seq += 1
            self._inflight[worker_id][self._seq] = (conn, key)
            self._owner[self._seq] = worker_id
            actions.append(Handoff(worker_id, self._seq, conn, rehand))
        self._queue = kept
        return actions

    def _next_worker(self, key: Hashable) -> int | None:
        """The least-handed worker of ``key`` with room; it goes to the back of the rotation."""
        rotation = self._rotations[key]
        best = None
        for worker_id, handed in rotation.items():
            if len(self._inflight[worker_id]) < self.window and (best is None or handed < rotation[best]):
                best = worker_id
        if best is not None:
            rotation[best] = rotation.pop(best) + 1
        return best
