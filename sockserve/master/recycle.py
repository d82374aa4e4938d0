"""Recycling workers without losing capacity (issue 13), on the master's current code paths.

A worker due for recycling (it asked: ``Recycle(max_requests | request_timeout)``; or
the master judged its age or RSS, see recycling.py) gets a successor in its own
generation and slot; only once that successor listens is the old worker
disconnected, exactly as a reload retires a generation.  So the listening count
never drops below the configured size, and the old worker drains what it holds.

LIFECYCLE MERGE: this drives ``Pool`` directly (``spawn_worker`` in the same slot, then
``WorkerHandle.disconnect``).  With the pure supervisor core it becomes an event
``Recycle(worker, reason)`` whose actions are SpawnWorker(generation, slot) and, on the
successor's listening, Disconnect(old); ``due()`` and the jitter stay in recycling.py.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .. import recycling
from ..systemd import log_event
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")


@dataclass
class Replacement:
    old: WorkerHandle
    reason: str
    started: float  # loop time the successor was asked for
    successor: WorkerHandle | None = None
    listening_after: float | None = None  # seconds until the successor listened


class Recycler:
    """Replaces due workers of the serving generation of ``master`` (a ``Master``)."""

    def __init__(self, master: Any, rng: random.Random | None = None) -> None:
        self.master = master
        self.config = master.config
        self.rng = rng or random.Random()
        self.active: dict[int, Replacement] = {}  # old worker id -> its replacement
        self.wanted: dict[int, str] = {}  # workers due, waiting for a free recycle
        self.counts: Counter[str] = Counter()
        self.last: dict[str, Any] | None = None
        self._lifetimes: dict[int, float] = {}
        self._rss: dict[int, recycling.RssWatch] = {}
        self._sampled: dict[int, float] = {}
        for event, callback in (("fork", self._fork), ("listening", self._listening), ("exit", self._exit)):
            master.emitter.on(event, callback)

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.max_requests or c.max_worker_lifetime or c.max_worker_rss or c.request_timeout)

    def request(self, worker: WorkerHandle, reason: str) -> None:
        """Recycle ``worker`` (a worker's ``Recycle`` message, or a master check)."""
        if reason not in recycling.REASONS or worker.id in self.active or worker.disconnect_at is not None:
            return
        self.wanted.setdefault(worker.id, reason)
        self._start_due()

    def tick(self, now: float) -> None:
        """Judge age and RSS of the serving generation's workers; start waiting recycles."""
        pool = self.master.pool
        if not self.enabled:
            return
        for worker in pool.members(pool.generation):
            if worker.listening and worker.disconnect_at is None and worker.id not in self.active:
                reason = self._judge(worker, now)
                if reason:
                    self.wanted.setdefault(worker.id, reason)
        self._start_due()

    def _judge(self, worker: WorkerHandle, now: float) -> str | None:
        c = self.config
        if worker.id not in self._lifetimes:
            self._lifetimes[worker.id] = recycling.lifetime_limit(
                c.max_worker_lifetime, c.max_worker_lifetime_jitter, self.rng.random())
        if recycling.lifetime_due(now - worker.started, self._lifetimes[worker.id]):
            return "lifetime"
        if c.max_worker_rss and now - self._sampled.get(worker.id, 0.0) >= recycling.RSS_INTERVAL:
            self._sampled[worker.id] = now
            watch = self._rss.setdefault(worker.id, recycling.RssWatch(c.max_worker_rss))
            if watch.sample(read_rss(worker.pid)):
                return "rss"
        return None

    def _start_due(self) -> None:
        pool = self.master.pool
        limit = max(1, pool.size // 2)  # at most half the pool booting successors at once
        for worker_id, reason in list(self.wanted.items()):
            worker = pool.workers.get(worker_id)
            if worker is None or worker.disconnect_at is not None or worker.generation != pool.generation:
                del self.wanted[worker_id]
                continue
            if len(self.active) >= limit or self.master.state != "running":
                return
            del self.wanted[worker_id]
            self._replace(worker, reason)

    def _replace(self, worker: WorkerHandle, reason: str) -> None:
        now = self.master.loop.time()
        self.active[worker.id] = Replacement(worker, reason, now)
        log_event(log, logging.INFO, "worker_recycle", f"worker {worker.id} (pid {worker.pid}) is due "
                  f"({reason}): starting its successor", worker_id=worker.id, pid=worker.pid,
                  generation=worker.generation, recycle_reason=reason)
        self.master.pool.spawn_worker(worker.generation, worker.slot)  # fork event adopts it

    # ------------------------------------------------------------ pool events
    def _fork(self, worker: WorkerHandle) -> None:
        for r in self.active.values():
            if (r.successor is None or not r.successor.alive) and (r.old.generation, r.old.slot) == (
                    worker.generation, worker.slot) and worker is not r.old:
                r.successor = worker
                return

    def _listening(self, worker: WorkerHandle, key: str) -> None:
        for r in self.active.values():
            if r.successor is worker and worker.listening and r.listening_after is None:
                now = self.master.loop.time()
                r.listening_after = now - r.started
                r.old.disconnect(now)

    def _exit(self, worker: WorkerHandle, reason: Any) -> None:
        for table in (self._lifetimes, self._rss, self._sampled, self.wanted):
            table.pop(worker.id, None)
        done = self.active.pop(worker.id, None)
        if done is not None:
            self._finished(done, reason)
        for r in list(self.active.values()):
            if r.successor is worker and r.listening_after is None and reason.kind == "boot_failure":
                del self.active[r.old.id]  # the old worker keeps serving
                log_event(log, logging.ERROR, "worker_recycle_failed", f"worker {r.old.id}: its "
                          "successor could not load the application; it keeps serving")
        self._start_due()

    def _finished(self, r: Replacement, reason: Any) -> None:
        if r.listening_after is None:  # died before its successor listened: the pool refills the
            if r.successor is not None:  # slot itself, so the successor would be one too many
                r.successor.disconnect(self.master.loop.time())
            return
        self.counts[r.reason] += 1
        took = self.master.loop.time() - r.started
        self.last = {"worker": r.old.id, "successor": r.successor.id if r.successor else None,
                     "reason": r.reason, "successor_listening_s": round(r.listening_after, 3),
                     "seconds": round(took, 3), "exit": reason.text}
        from .process import ExitReason

        r.old.exit = ExitReason("recycled", reason.code, f"recycled ({r.reason}), {reason.text}")
        log_event(log, logging.INFO, "worker_recycled", f"worker {r.old.id} (pid {r.old.pid}) recycled "
                  f"({r.reason}): successor {self.last['successor']} listened after "
                  f"{r.listening_after:.2f}s, old one {reason.text} after {took:.2f}s",
                  worker_id=r.old.id, pid=r.old.pid, generation=r.old.generation, recycle_reason=r.reason)

    def statistics(self) -> dict[str, Any]:
        return {"recycles": dict(self.counts), "last_recycle": self.last,
                "recycling": {str(r.old.id): r.reason for r in self.active.values()}}


def read_rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (/proc/PID/statm); 0 if it is gone."""
    import os

    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
