"""The master's guards (issue 13): metrics, recycling, development reload, idle exit.

One object the master holds; master.py only calls ``start``, ``tick``,
``statistics`` and ``close``, and the shell hands it the core's log events
(``logged``).  Each guard is its own module: metrics.py (Prometheus endpoint),
recycle.py (judge age and RSS; the core replaces workers: supervisor_recycle.py),
devreload.py (watch files, rolling reload), idle.py (when to exit).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from ..config import Config, ConfigError
from ..systemd import log_event
from .idle import IdleClock
from .recycle import Recycler

log = logging.getLogger("sockserve.master")


def check_listeners(config: Config, from_systemd: bool) -> None:
    """Settings that depend on who owns the listeners; ConfigError (exit 2) when they clash."""
    if config.reload and from_systemd:
        raise ConfigError("reload: cannot be combined with socket activation (LISTEN_FDS): "
                          "--reload is for development, run sockserve by hand")
    if config.exit_idle_time and not from_systemd:
        raise ConfigError("exit_idle_time: only with socket activation (LISTEN_FDS): nothing "
                          "would start sockserve again on the next connection")


class Guards:
    """Holds the guards of ``master`` (a ``Master``), created once its pool exists."""

    def __init__(self, master: Any) -> None:
        self.master = master
        self.config: Config = master.config
        self.exits: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.reloads = {"ok": 0, "failed": 0, "last_ok": None, "last_message": ""}
        self.recycler = Recycler(master)
        self.idle = IdleClock(self.config.exit_idle_time)
        self._metrics: Any = None
        self._watcher: Any = None
        master.emitter.on("exit", self._exit)

    def start(self) -> None:
        """Before the workers start: the metrics endpoint, the watcher (ConfigError: exit 2)."""
        if self.config.reload:
            from .devreload import DevReload

            self._watcher = DevReload(self.config, self.master.reload, self.master.loop)
            self._watcher.start()  # a change while the first generation boots: a queued reload
        if self.config.metrics:
            from .metrics import MetricsServer

            self._metrics = MetricsServer(self.config.metrics, self.master.statistics, self.master.loop)
            self._metrics.start()

    def tick(self, now: float) -> None:
        if self.master.state not in ("running", "reloading"):
            return
        self.recycler.tick(now)
        idle = self.config.exit_idle_time and self.idle.observe(now, *self._activity())
        if idle and self.master.state == "running":  # never in the middle of a reload
            log_event(log, logging.INFO, "idle_exit", f"no connection or request for "
                      f"{self.config.exit_idle_time:g}s: stopping (systemd starts us again on the "
                      "next connection)")
            self.master.handle_term()

    def _activity(self) -> tuple[tuple[int, ...], int]:
        """(what changes with every connection or request, connections open or waiting)."""
        m = self.master
        workers = m.pool.workers.values()
        handed = sum(w.counters.handed for w in workers)
        served = m.pool.served_by_dead + sum(w.counters.served for w in workers)
        busy = sum(w.counters.open for w in workers) + m.dispatcher.waiting()
        return (handed, served, len(m.pool.workers)), busy

    def logged(self, event: str, message: str) -> None:
        """The core's log events: reload results (its ``reload_promoted`` / ``reload_failed``)."""
        if event in ("reload_promoted", "reload_failed"):
            self.reloaded(event == "reload_promoted", message)

    def _exit(self, worker: Any, reason: Any) -> None:
        self.exits[reason.kind] += 1
        if reason.respawn:
            self.restarts[reason.kind] += 1

    def reloaded(self, ok: bool, message: str) -> None:
        self.reloads["ok" if ok else "failed"] += 1
        self.reloads["last_ok"], self.reloads["last_message"] = ok, message

    def statistics(self) -> dict[str, Any]:
        """What ``statistics()`` adds for the guards (also the metrics' source)."""
        summary = self.master.core.summary()
        return {"ready": self.master.state in ("running", "reloading"), "size": summary["size"],
                "exits": dict(self.exits), "restarts": dict(self.restarts), "reloads": dict(self.reloads),
                **self.recycler.statistics()}

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.close()
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)  # shutdown() waits for the server's thread
