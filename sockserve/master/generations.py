"""What the supervisor core tracks, pure: generations, their slots, and workers.

A generation is one config's set of workers: ``booting`` until every slot
listens, then ``serving`` (one at a time), ``retiring`` while it drains after
the next one took over, ``failed`` while its workers are killed after a
failed reload.  A slot is a numbered place in a generation that a worker
fills; a crashed worker's slot is refilled after the slot's back-off.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .backoff import Backoff


class GenStatus(enum.Enum):
    BOOTING = "booting"
    SERVING = "serving"
    RETIRING = "retiring"
    FAILED = "failed"


class WorkerStage(enum.Enum):
    BOOTING = "booting"  # spawned, not yet online
    ONLINE = "online"  # importing done, asking for its listeners
    LISTENING = "listening"  # takes connections
    LEAVING = "leaving"  # asked to leave for good (disconnect or kill): its slot is not refilled


@dataclass
class Slot:
    backoff: Backoff
    restarts: int = 0
    waiting: bool = False  # a respawn timer is pending


@dataclass
class Generation:
    number: int
    config: Any  # sockserve.config.Config
    size: int  # slots wanted
    status: GenStatus = GenStatus.BOOTING
    requests: list[Any] = field(default_factory=list)  # reload requests it answers
    error: str | None = None  # why it failed
    slots: dict[int, Slot] = field(default_factory=dict)
    replaced: int | None = None  # the generation it took over from (answer once that drained)

    def slot(self, index: int) -> Slot:
        if index not in self.slots:
            self.slots[index] = Slot(Backoff(self.config.restart_delay_max, self.config.stable_after))
        return self.slots[index]


@dataclass
class Worker:
    id: int
    generation: int
    slot: int
    stage: WorkerStage = WorkerStage.BOOTING
    boot_error: str | None = None
    listened: bool = False
    hung: bool = False  # killed at a stop for silence: its rr window is re-handed first
