"""The supervisor core's size and worker events and its timers, pure (part of supervisor.Supervisor).

TTIN/TTOU resize every generation that is booting or serving, so an operator's
size survives a reload.  A worker that leaves unasked is a boot failure while
its booting generation never listened (exit 6 for the first generation, a
failed reload later), otherwise its slot is refilled after the slot's back-off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import EXIT_APP, EXIT_FAILURE
from . import lifecycle as L
from .generations import Generation, GenStatus, Worker, WorkerStage
from .lifecycle import Phase

if TYPE_CHECKING:
    from .supervisor import Supervisor

G, W = GenStatus, WorkerStage


class WorkersMixin:
    # ------------------------------------------------------------ size
    def _grow(self: Supervisor, event: L.Ttin) -> None:
        grown = False
        for gen in self.generations.values():
            if gen.status in (G.BOOTING, G.SERVING) and gen.size < 1024:
                gen.size += 1
                grown = True
                self._spawn(gen, gen.size - 1)
        self._log("info", "resize", "one worker more (SIGTTIN)" if grown
                  else "SIGTTIN ignored: already at 1024 workers")

    def _shrink(self: Supervisor, event: L.Ttou) -> None:
        shrunk = False
        for gen in list(self.generations.values()):
            if gen.status not in (G.BOOTING, G.SERVING) or gen.size <= 1:
                continue
            gen.size -= 1
            shrunk = True
            self._cancel(("respawn", gen.number, gen.size))
            gen.slot(gen.size).waiting = False
            for w in self.members(gen.number):
                if w.slot >= gen.size:
                    self._retire_worker(w)
        self._log("info", "resize", "one worker less (SIGTTOU)" if shrunk
                  else "SIGTTOU ignored: already at 1 worker")
        booting = self._booting()
        if booting is not None and self._complete(booting):
            self._ready(booting)

    # ------------------------------------------------------------ workers
    def _worker_online(self: Supervisor, event: L.Online) -> None:
        w = self.workers.get(event.worker)
        if w is not None and w.stage is W.BOOTING:
            w.stage = W.ONLINE

    def _worker_boot_error(self: Supervisor, event: L.BootError) -> None:
        w = self.workers.get(event.worker)
        if w is not None and w.boot_error is None:
            w.boot_error = event.reason

    def _worker_listening(self: Supervisor, event: L.Listening) -> None:
        w = self.workers.get(event.worker)
        if w is None or w.stage is W.LEAVING:
            return
        w.stage, w.listened = W.LISTENING, True
        self._cancel(("worker-boot", w.id))
        self._successor_listening(w)
        gen = self.generations[w.generation]
        if w.slot >= gen.size:
            self._retire_worker(w)
        elif gen.status is G.BOOTING and self._complete(gen):
            self._ready(gen)

    def _worker_silent(self: Supervisor, event: L.Silent) -> None:
        w = self.workers.get(event.worker)
        if w is not None:  # the shell logged why, with the pid
            self._emit(L.Kill(w.id, "SIGKILL"))

    def _worker_gone(self: Supervisor, event: L.Exited | L.SpawnFailed) -> None:
        w = self.workers.pop(event.worker, None)
        if w is None:
            return
        for name in (("worker-boot", w.id), ("drain", w.id)):
            self._cancel(name)
        self._recycle_gone(w)
        gen = self.generations[w.generation]
        if isinstance(event, L.SpawnFailed):
            self._log("error", "spawn_failed", f"cannot start worker {w.id}: {event.reason}",
                      generation=gen.number)
        if self.phase is Phase.STOPPING:
            self._forget_if_empty(gen)
            self._stopping_worker_gone(w)
        elif w.stage is W.LEAVING:
            self._forget_if_empty(gen)
        elif gen.status is G.BOOTING and not w.listened and isinstance(event, L.Exited):
            self._boot_failed(gen, w, event)
        else:  # a failed spawn (EMFILE, exec) is retried, bounded by the generation's boot timer
            if w.boot_error is not None and not w.listened:  # say why, not only "could not load"
                self._log("error", "worker_boot_error", f"worker {w.id} could not start: "
                          f"{w.boot_error}; retrying after the slot's back-off", worker_id=w.id)
            self._refill(gen, w.slot, event.lived if isinstance(event, L.Exited) else 0.0)

    def _boot_failed(self: Supervisor, gen: Generation, w: Worker, event: L.Exited) -> None:
        reason = w.boot_error or (f"worker {w.id} {event.text} before it listened "
                                  f"(the application's import or startup ended it)")
        if self.phase is Phase.STARTING:
            self._log("critical", "worker_boot_failure", reason)
            self._stop(graceful=False, code=EXIT_APP, quiet=True)
        else:
            self._fail_generation(gen, reason)

    def _refill(self: Supervisor, gen: Generation, slot: int, lived: float) -> None:
        """Refill a crashed worker's slot after the slot's back-off (gunicorn, systemd Restart=)."""
        if slot >= gen.size or gen.status not in (G.BOOTING, G.SERVING):
            return
        state = gen.slot(slot)
        delay = state.backoff.exited(lived, crashed=True)
        state.restarts += 1
        state.waiting = True
        self._set_timer(("respawn", gen.number, slot), delay)

    # ------------------------------------------------------------ timers
    def _timer(self: Supervisor, event: L.Timer) -> None:
        if event.name not in self.timers:
            return  # cancelled meanwhile
        self.timers.discard(event.name)
        kind, *args = event.name
        getattr(self, "_timer_" + kind.replace("-", "_"))(*args)

    def _timer_boot(self: Supervisor, number: int) -> None:
        gen = self.generations.get(number)
        if gen is None or gen.status is not G.BOOTING:
            return
        why = f"workers did not listen within {gen.config.boot_timeout:g}s (boot_timeout)"
        if self.phase is Phase.STARTING:
            self._log("critical", "boot_timeout", why)
            self._stop(graceful=False, code=EXIT_FAILURE, quiet=True)
        else:
            self._fail_generation(gen, why)

    def _timer_respawn(self: Supervisor, number: int, slot: int) -> None:
        gen = self.generations.get(number)
        if gen is None:
            return
        gen.slot(slot).waiting = False
        taken = any(w.slot == slot and w.stage is not W.LEAVING for w in self.members(number))
        if slot < gen.size and gen.status in (G.BOOTING, G.SERVING) and not taken:
            self._spawn(gen, slot)

    def _timer_worker_boot(self: Supervisor, worker: int) -> None:
        w = self.workers.get(worker)
        if w is not None and w.stage in (W.BOOTING, W.ONLINE):
            timeout = self.generations[w.generation].config.boot_timeout
            self._log("error", "worker_timeout",
                      f"worker {w.id} not listening after boot_timeout ({timeout:g}s); killing it",
                      worker_id=w.id)
            self._emit(L.Kill(w.id, "SIGKILL"))

    def _timer_drain(self: Supervisor, worker: int) -> None:
        if worker in self.workers:
            self._log("warning", "worker_timeout",
                      f"worker {worker} still draining after graceful_timeout; killing it", worker_id=worker)
            self._emit(L.Kill(worker, "SIGKILL"))

    def _timer_unserved(self: Supervisor) -> None:
        self._log("critical", "no_workers",
                  f"no worker listened for {self._unserved_bound():g}s: exiting so that Restart= acts")
        self._stop(graceful=False, code=EXIT_FAILURE)

    def _unserved_bound(self: Supervisor) -> float:
        return float(self.config.boot_timeout + self.config.restart_delay_max)

    def _watch_unserved(self: Supervisor) -> None:
        if self.phase not in (Phase.RUNNING, Phase.RELOADING):
            return
        if any(w.stage is W.LISTENING for w in self.members(self.serving)):
            self._cancel(("unserved",))
        elif ("unserved",) not in self.timers:
            self._set_timer(("unserved",), self._unserved_bound())
