"""Round-robin scheduling (Node's SCHED_RR), pure: methods return actions.

The master accepts; each connection goes to the worker in rotation that has
room in its window of un-acked hand-offs and has been handed the fewest so
far (ties in rotation order).  A worker skipped while its window was full
(descheduled, busy) catches up as soon as it has room, so the split stays
even in count without ever waiting for a slow worker; a worker that joins
starts level with the others instead of owed every connection so far.  The master keeps its copy of a
connection until the worker acks ``accepted``; a reject, or the worker's
death before its ack, puts the connection back at the head of the queue, so
no accepted connection is ever lost.

Connections are opaque tokens here; the master maps them to sockets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

from ..cluster.protocol import ProtocolError


@dataclass(frozen=True, slots=True)
class Handoff:
    """Send ``conn`` to ``worker_id`` under ``seq`` (in a NewConn)."""

    worker_id: int
    seq: int
    conn: Hashable
    rehand: bool  # it went to another worker before


@dataclass(frozen=True, slots=True)
class Release:
    """The worker owns ``conn`` now: close the master's copy."""

    conn: Hashable


Action = Handoff | Release


class RoundRobin:
    mode = "rr"

    def __init__(self, window: int = 1) -> None:
        self.window = window
        self._rotation: deque[int] = deque()  # workers taking connections, next first
        self._inflight: dict[int, dict[int, Hashable]] = {}  # worker -> seq -> conn
        self._owner: dict[int, int] = {}  # seq -> worker
        self._queue: deque[tuple[Hashable, bool]] = deque()  # (conn, rehand) waiting for room
        self._handed: dict[int, int] = {}  # worker -> hand-offs, for catching up after a skip
        self._seq = 0

    # ------------------------------------------------------------ workers
    def add(self, worker_id: int) -> list[Action]:
        """``worker_id`` listens: it takes connections from now on."""
        self._inflight.setdefault(worker_id, {})
        if worker_id not in self._rotation:
            self._handed[worker_id] = min((self._handed[w] for w in self._rotation), default=0)
            self._rotation.append(worker_id)
        return self._drain()

    def stop(self, worker_id: int) -> list[Action]:
        """No new hand-offs to ``worker_id``; its un-acked ones await their acks."""
        if worker_id in self._rotation:
            self._rotation.remove(worker_id)
        return self._drain()

    def remove(self, worker_id: int) -> list[Action]:
        """``worker_id`` is gone: every connection it had not acked is re-handed."""
        if worker_id in self._rotation:
            self._rotation.remove(worker_id)
        self._handed.pop(worker_id, None)
        lost = self._inflight.pop(worker_id, {})
        for seq in sorted(lost, reverse=True):
            del self._owner[seq]
            self._queue.appendleft((lost[seq], True))
        return self._drain()

    # ------------------------------------------------------------ connections
    def distribute(self, conn: Hashable) -> list[Action]:
        self._queue.append((conn, False))
        return self._drain()

    def ack(self, worker_id: int, seq: int, accepted: bool) -> list[Action]:
        if self._owner.get(seq) != worker_id:
            raise ProtocolError(f"ack for seq {seq}, which worker {worker_id} does not hold")
        del self._owner[seq]
        conn = self._inflight[worker_id].pop(seq)
        if accepted:
            return [Release(conn), *self._drain()]
        self._queue.appendleft((conn, True))
        return self.stop(worker_id)  # a worker that says no is closing

    # ------------------------------------------------------------ state
    def capacity(self) -> int:
        """How many more hand-offs the workers in rotation can take now."""
        free = sum(self.window - len(self._inflight[w]) for w in self._rotation)
        return free - len(self._queue)

    def drain_queue(self) -> list[Hashable]:
        """The queued conns (waiting for room), oldest first, taken out of the policy: a
        retired policy hands them to the one in effect (policy_switch.py)."""
        conns = [conn for conn, _ in self._queue]
        self._queue.clear()
        return conns

    def waiting(self) -> int:
        """Connections accepted but not yet handed (queued) or not yet acked."""
        return len(self._queue) + len(self._owner)

    def _drain(self) -> list[Action]:
        actions: list[Action] = []
        while self._queue:
            worker_id = self._next_worker()
            if worker_id is None:
                break
            conn, rehand = self._queue.popleft()
            self._seq += 1
            self._inflight[worker_id][self._seq] = conn
            self._owner[self._seq] = worker_id
            self._handed[worker_id] += 1
            actions.append(Handoff(worker_id, self._seq, conn, rehand))
        return actions

    def _next_worker(self) -> int | None:
        """The least-handed worker with room; it goes to the back of the rotation."""
        best = None
        for worker_id in self._rotation:
            if len(self._inflight[worker_id]) < self.window and (
                    best is None or self._handed[worker_id] < self._handed[best]):
                best = worker_id
        if best is not None:
            self._rotation.remove(best)
            self._rotation.append(best)
        return best
