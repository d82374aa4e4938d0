"""The master's handle on one worker: identity, channel, protocol state, counters.

Node's ``cluster.Worker`` in the primary: ``send``, ``disconnect``, ``kill``,
``state``, plus the statistics sockserve reports per worker.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from ..cluster.channel import Channel
from ..cluster.peer import WorkerPeer, WorkerState
from ..cluster.protocol import Disconnect, UserMessage
from . import process
from .process import ExitReason


@dataclass
class Counters:
    handed: int = 0  # connections sent (NewConn)
    accepted: int = 0  # acked accepted
    rejected: int = 0  # acked rejected
    rehanded: int = 0  # handed here after another worker rejected or died
    open: int = 0  # open connections (heartbeat)
    served: int = 0  # requests served (heartbeat)


@dataclass(eq=False)
class WorkerHandle:
    id: int
    slot: int
    generation: int
    pid: int
    pidfd: int
    channel: Channel
    peer: WorkerPeer
    started: float  # loop time
    last_seen: float
    counters: Counters = field(default_factory=Counters)
    restarts: int = 0  # of this slot before this worker
    disconnect_at: float | None = None  # loop time the master asked it to leave
    killed: bool = False  # the master sent a kill
    timed_out: bool = False
    fault: str | None = None  # protocol error that got it replaced
    paused_since: float | None = None  # loop time it said it is out of fds (handoff.py)
    exit: ExitReason | None = None

    @property
    def state(self) -> WorkerState:
        return self.peer.state

    @property
    def listening(self) -> bool:
        return self.peer.state is WorkerState.LISTENING

    @property
    def alive(self) -> bool:
        return self.peer.state is not WorkerState.DEAD

    def send(self, payload: Any) -> None:
        """Node's ``worker.send(message)``: a JSON value to this worker."""
        self.channel.send(UserMessage(payload))

    def disconnect(self, now: float) -> None:
        """Ask the worker to stop taking connections, finish the open ones and exit."""
        if self.disconnect_at is None and self.alive:
            self.disconnect_at = now
            self.peer.event("disconnect")
            self.channel.send(Disconnect())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            self.killed = True
            process.kill(self.pid, sig)

    def as_dict(self) -> dict[str, Any]:
        c = self.counters
        return {
            "id": self.id, "pid": self.pid, "state": self.state.value,
            "generation": self.generation, "slot": self.slot,
            "handed": c.handed, "accepted": c.accepted, "rejected": c.rejected,
            "rehanded": c.rehanded, "open": c.open, "served": c.served,
            "restarts": self.restarts, "last_exit": self.exit.text if self.exit else "",
            "fd_paused": self.paused_since is not None,  # out of fds: takes no connection
        }
