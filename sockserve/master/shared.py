"""Shared-socket scheduling (Node's SCHED_NONE) and SO_REUSEPORT, pure.

With ``shared`` the master sends each worker the listening socket once and
the workers accept themselves: the kernel schedules, with the known costs
(thundering herd, imbalance under load).  With ``reuseport`` (embedded mode
only) every worker binds its own SO_REUSEPORT socket to the same address; the
kernel hashes connections across them.  In both the master accepts nothing,
so the hand-off contract (distribute / ack) is empty.
"""

from __future__ import annotations

from collections.abc import Hashable

from ..cluster.protocol import ProtocolError
from .round_robin import DEFAULT_KEY, Action, RoundRobin


class Shared:
    mode = "shared"

    def add(self, worker_id: int, key: Hashable = DEFAULT_KEY) -> list[Action]:
        return []

    def stop(self, worker_id: int, key: Hashable | None = None) -> list[Action]:
        return []

    def forget(self, key: Hashable) -> list[Action]:
        return []

    def remove(self, worker_id: int) -> list[Action]:
        return []

    def distribute(self, conn: Hashable, key: Hashable = DEFAULT_KEY) -> list[Action]:
        raise RuntimeError(f"the {self.mode} policy accepts nothing in the master")

    def ack(self, worker_id: int, seq: int, accepted: bool) -> list[Action]:
        raise ProtocolError(f"ack under the {self.mode} policy")

    def capacity(self, key: Hashable | None = None) -> int:
        return 0

    def waiting(self) -> int:
        return 0


class ReusePort(Shared):
    mode = "reuseport"


def make_policy(name: str, window: int) -> RoundRobin | Shared:
    """The policy object for ``name`` (rr, shared, reuseport)."""
    return {"rr": lambda: RoundRobin(window), "shared": Shared, "reuseport": ReusePort}[name]()
