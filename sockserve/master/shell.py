"""The supervisor core's I/O shell: feed it events, carry out its actions (part of master.Master).

``feed`` queues events so an action that causes an event (a spawn that fails)
never re-enters the core.  Timers are loop timers (``call_later``); notify
lines get their live values here (``STATUS``, MONOTONIC_USEC= with RELOADING=1).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections import deque
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..systemd import log_event, reloading_lines
from . import lifecycle as L

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger("sockserve.master")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}


class Shell:
    def _shell_init(self: Master) -> None:
        self._stopped: asyncio.Future[int] = self.loop.create_future()
        self._timers: dict[tuple[Any, ...], asyncio.TimerHandle] = {}
        self._events: deque[L.Event] = deque()
        self._feeding = False

    def feed(self: Master, event: L.Event) -> None:
        """Hand ``event`` to the core and carry out what it answers (events it causes queue up)."""
        self._events.append(event)
        if self._feeding:
            return
        self._feeding = True
        try:
            while self._events:
                for action in self.core.handle(self._events.popleft()):
                    self._carry_out(action)
                self._queue_checked()
                self._changed()
        finally:
            self._feeding = False

    def _queue_checked(self: Master) -> None:
        """While a stop hands out what was accepted: QueueEmpty once nothing waits (after acks too)."""
        if self.core.wants_queue_empty and self.dispatcher.waiting() == 0:
            if self._feeding:
                self._events.append(L.QueueEmpty())
            else:
                self.feed(L.QueueEmpty())

    def _carry_out(self: Master, a: L.Action) -> None:
        if isinstance(a, L.Spawn):
            slot = self.core.generations[a.generation].slots.get(a.slot)
            self.pool.spawn(a, slot.restarts if slot else 0)
        elif isinstance(a, L.Disconnect):
            self.pool.disconnect(a.worker)
        elif isinstance(a, L.Kill):
            self.pool.kill(a.worker, getattr(signal, a.signal), a.reason)
        elif isinstance(a, L.StartAccepting):
            self.dispatcher.start_accepting()
        elif isinstance(a, L.StopAccepting):  # a stop: embedded mode refuses new clients now
            self.dispatcher.stop_listening()
        elif isinstance(a, L.Promote):
            self._promote(a)
        elif isinstance(a, L.Notify):
            self._notify(a.lines)
        elif isinstance(a, L.SetTimer):
            self._set_timer(a.name, a.delay)
        elif isinstance(a, L.CancelTimer):
            if handle := self._timers.pop(a.name, None):
                handle.cancel()
        elif isinstance(a, L.ReadConfig):
            self._read_config(a.attempt)
        elif isinstance(a, L.ReloadResult):
            future = self._requests.pop(a.request, None)
            if future is not None and not future.done():
                future.set_result((a.ok, a.message, a.superseded))
        elif isinstance(a, L.Log):
            message = a.message
            if a.event == "ready":
                message = f"ready: {self._status_line()} on {', '.join(self.dispatcher.listeners)}"

            log_event(log, LEVELS[a.level], a.event, message, **a.fields)
            self.guards.logged(a.event, a.message)
        elif isinstance(a, L.Exit) and not self._stopped.done():
            self._stopped.set_result(a.code)

    def _promote(self: Master, a: L.Promote) -> None:
        """The promoted generation's config is in effect: its policy takes new connections."""
        self.config = a.config
        self.dispatcher.switch(a.config.policy)

    def _set_timer(self: Master, name: tuple[Any, ...], delay: float) -> None:
        if old := self._timers.pop(name, None):
            old.cancel()
        self._timers[name] = self.loop.call_later(delay, self._fire, name)

    def _fire(self: Master, name: tuple[Any, ...]) -> None:
        self._timers.pop(name, None)
        self.feed(L.Timer(name))

    def _cancel_timers(self: Master) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _read_config(self: Master, attempt: int) -> None:
        """A reload reads its config now, after it was asked for (the app is imported by its workers)."""
        try:
            config = self._reread() if self._reread else self.config
        except ConfigError as exc:
            self._events.append(L.ConfigRead(attempt, error=str(exc)))
            return
        self._events.append(L.ConfigRead(attempt, config))

    def _notify(self: Master, lines: tuple[str, ...]) -> None:
        out: list[str] = []
        for line in lines:
            if line == "STATUS":
                self._status = self._status_line()
                out.append(f"STATUS={self._status}")
            elif line == "RELOADING=1":
                out += reloading_lines()
            elif line != "WATCHDOG=1" or self.core.watchdog_ok():
                out.append(line)
        self.notifier.notify(*out)

    def _status_line(self: Master) -> str:
        s = self.core.summary()
        served = self.pool.served_by_dead + sum(w.counters.served for w in self.pool.workers.values())
        status = (f"{s['listening']}/{s['size']} workers, {s['policy']}, {served} served, "
                  f"generation {s['generation']}")
        if s["last_reload_error"]:  # until the next reload succeeds (systemctl status shows it)
            status += f"; last reload failed: {s['last_reload_error']}"
        return "reloading: " + status if s["state"] == "reloading" else status

    def _changed(self: Master) -> None:
        """Recompute STATUS=; tell systemd when it changed."""
        status = self._status_line()
        if status != self._status:
            self._status = status
            if self.core.phase.value in ("running", "reloading"):
                self.notifier.notify(f"STATUS={status}")
