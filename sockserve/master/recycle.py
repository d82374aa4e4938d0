"""Recycling, the shell's part (issue 13): judge age and RSS, time what the core does.

The core decides (supervisor_recycle.py): ``Recycle(worker, reason)`` spawns a
successor in the worker's slot and disconnects the worker once the successor
listens.  Workers ask themselves (``Recycle`` message: max_requests,
request_timeout; pool.py feeds it); this module feeds the master's own
judgments: ``lifetime`` (``max_worker_lifetime`` + jitter) and ``rss``
(``max_worker_rss``, sampled from /proc; recycling.py says when).  It also
watches the pool's events to report how long the last recycle took.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

from .. import recycling
from ..systemd import log_event
from . import lifecycle as L
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")


class Recycler:
    """Feeds ``Recycle`` events for workers of ``master`` (a ``Master``) that are too old or big."""

    def __init__(self, master: Any, rng: random.Random | None = None) -> None:
        self.master = master
        self.config = master.config
        self.rng = rng or random.Random()
        self.last: dict[str, Any] | None = None
        self._lifetimes: dict[int, float] = {}
        self._rss: dict[int, recycling.RssWatch] = {}
        self._sampled: dict[int, float] = {}
        self._started: dict[int, tuple[float, int, str]] = {}  # successor -> (loop time, old, reason)
        self._listened: dict[int, tuple[float, int, str, int]] = {}  # old -> (after, successor, reason, t0)
        for event, callback in (("fork", self._fork), ("listening", self._listening), ("exit", self._exit)):
            master.emitter.on(event, callback)

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.max_worker_lifetime or c.max_worker_rss)

    def tick(self, now: float) -> None:
        """Judge age and RSS of the serving generation's listening workers."""
        if not self.enabled or self.master.state != "running":
            return
        serving = self.master.core.serving
        for worker in list(self.master.pool.workers.values()):
            if worker.generation == serving and worker.listening and worker.disconnect_at is None:
                reason = self._judge(worker, now)
                if reason:
                    self.master.feed(L.Recycle(worker.id, reason))  # the core ignores repeats

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

    # ------------------------------------------------------------ timing what the core does
    def _fork(self, worker: WorkerHandle) -> None:
        entry = self.master.core.recycling.get(worker.id)
        if entry is not None:
            self._started[worker.id] = (self.master.loop.time(), *entry)

    def _listening(self, worker: WorkerHandle, key: str) -> None:
        started = self._started.pop(worker.id, None) if worker.listening else None
        if started is not None:
            t0, old, reason = started
            self._listened[old] = (self.master.loop.time() - t0, worker.id, reason, t0)

    def _exit(self, worker: WorkerHandle, reason: Any) -> None:
        for table in (self._lifetimes, self._rss, self._sampled, self._started):
            table.pop(worker.id, None)
        done = self._listened.pop(worker.id, None)
        if done is not None:
            after, successor, why, t0 = done
            self.last = {"worker": worker.id, "successor": successor, "reason": why,
                         "successor_listening_s": round(after, 3),
                         "seconds": round(self.master.loop.time() - t0, 3), "exit": reason.text}
            log_event(log, logging.INFO, "worker_recycle_done", f"worker {worker.id} (pid {worker.pid}) "
                      f"recycled ({why}): successor {successor} listened after {after:.2f}s, old one "
                      f"{reason.text} after {self.last['seconds']:.2f}s", worker_id=worker.id,
                      pid=worker.pid, recycle_reason=why)

    def statistics(self) -> dict[str, Any]:
        core = self.master.core
        return {"recycles": dict(core.recycled), "last_recycle": self.last,
                "recycling": {str(old): why for old, why in core.recycling.values()}}


def read_rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (/proc/PID/statm); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
