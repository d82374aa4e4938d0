"""Recycling in the supervisor core, pure (issue 13; part of supervisor.Supervisor).

``Recycle(worker, reason)`` (the worker asked: max_requests, request_timeout; or the
shell judged it: lifetime, rss; recycling.py) replaces one worker the way a reload
replaces a generation: a successor is spawned in the same generation and slot, and
the old worker is disconnected only once the successor listens, so the slots that
listen never drop.  If the successor dies before it listens, the old one keeps
serving (the slot is taken, so no respawn) and may be recycled again later; if the
old one dies first, the successor is its slot's worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import lifecycle as L
from .generations import Worker, WorkerStage

if TYPE_CHECKING:
    from .supervisor import Supervisor

W = WorkerStage


class RecycleMixin:
    def _recycle(self: Supervisor, event: L.Recycle) -> None:
        w = self.workers.get(event.worker)
        if w is None or w.stage is not W.LISTENING or w.generation != self.serving:
            return
        gen = self.generations[w.generation]
        if w.slot >= gen.size or any(old == w.id for old, _ in self.recycling.values()):
            return
        successor = self._next_worker
        self._spawn(gen, w.slot)
        self.recycling[successor] = (w.id, event.reason)
        self._log("info", "worker_recycle", f"worker {w.id} is due ({event.reason}): worker "
                  f"{successor} starts in its place", worker_id=w.id, recycle_reason=event.reason)

    def _successor_listening(self: Supervisor, w: Worker) -> None:
        """``w`` listens: if it succeeds a recycled worker, that one leaves now."""
        old_id, reason = self.recycling.pop(w.id, (None, ""))
        old = self.workers.get(old_id) if old_id is not None else None
        if old is None or old.stage is W.LEAVING:
            return
        self._retire_worker(old)
        self.recycled[reason] = self.recycled.get(reason, 0) + 1
        self._log("info", "worker_recycled", f"worker {old.id} recycled ({reason}): worker {w.id} "
                  "listens in its place", worker_id=old.id, recycle_reason=reason)

    def _recycle_gone(self: Supervisor, w: Worker) -> None:
        """``w`` is gone: a successor that never listened is forgotten (its old worker serves on)."""
        self.recycling.pop(w.id, None)
