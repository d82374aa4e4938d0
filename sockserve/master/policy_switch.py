"""A reload that changes ``policy`` (rr <-> shared), pure: each worker is scheduled by its own
generation's policy, new connections by the policy in effect (the serving generation's).

The Dispatcher installs one as its ``policy`` when a worker's generation has another policy
than the one in effect (policy_modes.py ``assign``), around the policy it had (``around``; the C rr
engine too): same contract as RoundRobin and Shared (round_robin.py, shared.py), plus
``assign`` (a worker's policy, told at spawn) and ``switch`` (a generation was promoted).  A
policy no worker uses any more hands what it still queues (its ``drain_queue``) to the one in
effect (or closes it, when that one accepts nothing in the master).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from .round_robin import DEFAULT_KEY, Action, Release


class PolicySwitch:
    def __init__(self, mode: str, make: Callable[[str], Any], policy: Any = None) -> None:
        """``mode`` in effect, its policy ``policy`` (``make(mode)`` if None); ``make(mode)``
        builds the policy of a mode a later generation brings."""
        self._make = make
        self.current = mode
        self.policies: dict[str, Any] = {mode: make(mode) if policy is None else policy}
        self._owner: dict[int, str] = {}  # worker -> its generation's policy

    @classmethod
    def around(cls, policy: Any, make: Callable[[str], Any], workers: Iterable[int]) -> PolicySwitch:
        """A switch whose policy in effect is ``policy`` (already running), every one of
        ``workers`` its own: it stays theirs when another policy comes into effect."""
        switch = cls(policy.mode, make, policy)
        for worker_id in workers:
            switch.assign(worker_id, policy.mode)
        return switch

    @property
    def mode(self) -> str:
        return self.current

    def assign(self, worker_id: int, mode: str) -> None:
        """``worker_id`` runs ``mode`` (its generation's policy); call before it listens."""
        self._owner[worker_id] = mode
        if mode not in self.policies:
            self.policies[mode] = self._make(mode)

    def switch(self, mode: str) -> list[Action]:
        """``mode`` is in effect from now on (a reload's generation was promoted)."""
        if mode not in self.policies:
            self.policies[mode] = self._make(mode)
        self.current = mode
        return self._retire_unused()

    def _of(self, worker_id: int) -> Any:
        return self.policies.get(self._owner.get(worker_id, self.current), self.policies[self.current])

    def add(self, worker_id: int, key: Hashable = DEFAULT_KEY) -> list[Action]:
        return self._of(worker_id).add(worker_id, key)  # type: ignore[no-any-return]

    def stop(self, worker_id: int, key: Hashable | None = None) -> list[Action]:
        return self._of(worker_id).stop(worker_id, key)  # type: ignore[no-any-return]

    def forget(self, key: Hashable) -> list[Action]:
        """``key`` is released: every policy closes what it holds of it."""
        return [a for p in self.policies.values() for a in p.forget(key)]

    def remove(self, worker_id: int) -> list[Action]:
        actions = list(self._of(worker_id).remove(worker_id))
        self._owner.pop(worker_id, None)
        return actions + self._retire_unused()

    def _retire_unused(self) -> list[Action]:
        actions: list[Action] = []
        used = set(self._owner.values()) | {self.current}
        for mode in [m for m in self.policies if m not in used]:
            drain = getattr(self.policies.pop(mode), "drain_queue", None)  # Shared queues nothing
            for conn, key in drain() if drain else ():
                actions += self.distribute(conn, key) if self.current == "rr" else [Release(conn)]
        return actions

    def distribute(self, conn: Hashable, key: Hashable = DEFAULT_KEY) -> list[Action]:
        return self.policies[self.current].distribute(conn, key)  # type: ignore[no-any-return]

    def ack(self, worker_id: int, seq: int, accepted: bool) -> list[Action]:
        return self._of(worker_id).ack(worker_id, seq, accepted)  # type: ignore[no-any-return]

    def capacity(self, key: Hashable | None = None) -> int:
        return int(self.policies[self.current].capacity(key))

    def waiting(self) -> int:
        return sum(int(p.waiting()) for p in self.policies.values())
