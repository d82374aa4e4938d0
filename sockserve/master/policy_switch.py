"""A reload that changes ``policy`` (rr <-> shared), pure: the new policy takes every new
worker and every new connection; the old one keeps the workers it knew until they are gone,
so their acks, stops and deaths still land where their hand-offs are (round_robin.py).

The Dispatcher holds one of these as its ``policy``; same contract as RoundRobin and Shared.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .round_robin import Action, Release


class PolicySwitch:
    def __init__(self, current: Any) -> None:
        self.current = current
        self._old: list[tuple[Any, set[int]]] = []  # earlier policies and the workers they still own
        self._members: set[int] = set()  # workers of ``current``

    @property
    def mode(self) -> str:
        return str(self.current.mode)

    def switch(self, new: Any) -> list[Action]:
        """``new`` takes over from now on (a reload's generation was promoted)."""
        if self._members:
            self._old.append((self.current, self._members))
        self.current, self._members = new, set()
        return []

    def _owner(self, worker_id: int) -> Any:
        for policy, members in self._old:
            if worker_id in members:
                return policy
        return self.current

    def add(self, worker_id: int) -> list[Action]:
        self._members.add(worker_id)
        return list(self.current.add(worker_id))

    def stop(self, worker_id: int) -> list[Action]:
        return list(self._owner(worker_id).stop(worker_id))

    def remove(self, worker_id: int) -> list[Action]:
        owner = self._owner(worker_id)
        actions = list(owner.remove(worker_id))
        self._members.discard(worker_id)
        for _, members in self._old:
            members.discard(worker_id)
        # an old policy with no worker left hands what it still queues to the current one
        for policy, members in [entry for entry in self._old if not entry[1]]:
            self._old.remove((policy, members))
            actions += self._requeue(policy)
        return actions

    def _requeue(self, policy: Any) -> list[Action]:
        queue = getattr(policy, "_queue", None)
        actions: list[Action] = []
        while queue:
            conn, _ = queue.popleft()
            actions += self.distribute(conn) if self.current.mode == "rr" else [Release(conn)]
        return actions

    def distribute(self, conn: Hashable) -> list[Action]:
        return list(self.current.distribute(conn))

    def ack(self, worker_id: int, seq: int, accepted: bool) -> list[Action]:
        return list(self._owner(worker_id).ack(worker_id, seq, accepted))

    def capacity(self) -> int:
        return int(self.current.capacity())

    def waiting(self) -> int:
        return int(self.current.waiting()) + sum(int(p.waiting()) for p, _ in self._old)

