"""The supervisor core's stop sequence, pure (part of supervisor.Supervisor).

Graceful (SIGTERM): with ``drain_delay``, first serve on that long in the STOPPING phase
(stop stage "delay": the agent answers drain, agentcheck.py; SIGINT cuts it short).  Then
stop accepting; kill the workers that were hung and any
that do not listen yet; wait (at most ``HANDOUT``) until every accepted
connection, the hung workers' rr windows included, is handed to a worker that
still takes connections; then disconnect every worker, kill what still drains
at ``graceful_timeout``, and exit when the last one is gone.  Fast (SIGINT,
SIGQUIT, a boot failure): SIGQUIT to listening workers, SIGKILL to the rest,
SIGKILL to everyone after ``FAST``.  Either way the stop ends within
``bound()`` seconds: the last ``FINAL`` seconds wait for reaped SIGKILLs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import EXIT_SLACK, SHUTDOWN_BUDGET
from . import lifecycle as L
from .generations import GenStatus, WorkerStage
from .lifecycle import Phase

if TYPE_CHECKING:
    from .supervisor import Supervisor

HANDOUT = 5.0  # seconds, at most, to hand out what was accepted before the workers leave
FAST = SHUTDOWN_BUDGET + EXIT_SLACK  # seconds a fast stop waits before SIGKILL (lifespan shutdown)
FINAL = 2.0  # seconds to reap after the last SIGKILL


class StopMixin:
    def bound(self: Supervisor) -> float:
        """The longest a stop started now can last, in seconds."""
        return min(HANDOUT, self.config.graceful_timeout) + self._drain_max() + 1 + FINAL

    def _drain_max(self: Supervisor) -> float:
        return max((g.config.drain_kill_after() for g in self.generations.values()),
                   default=self.config.drain_kill_after())

    def _stop_graceful(self: Supervisor, event: L.Term) -> None:
        if self.config.drain_delay > 0:  # serve on while a load balancer's agent sees "drain"
            self.phase, self.exit_code, self.stop_stage = Phase.STOPPING, 0, "delay"
            self._begin_stopping(True, False, delay=self.config.drain_delay)
            self._delayed_hung = event.hung
            self._set_timer(("drain-delay",), self.config.drain_delay)
            return
        self._stop(graceful=True, code=0, hung=event.hung)

    def _timer_drain_delay(self: Supervisor) -> None:
        if self.stop_stage == "delay":
            self._stop(graceful=True, code=0, hung=self._delayed_hung)

    def _stop_fast(self: Supervisor, event: L.Int) -> None:
        self._stop(graceful=False, code=self.exit_code if self.phase is Phase.STOPPING else 0)

    def _stop(self: Supervisor, graceful: bool, code: int, hung: tuple[int, ...] = (),
              quiet: bool = False) -> None:
        """``quiet``: the caller logged why (a boot failure's one line stays the last word)."""
        first = self.phase is not Phase.STOPPING
        self.phase, self.exit_code = Phase.STOPPING, code
        if first:
            self._begin_stopping(graceful, quiet)
        elif self.stop_stage == "delay":  # the drain delay ends (its timer, or SIGINT cuts it short)
            self._cancel(("drain-delay",))
            self._emit(L.StopAccepting())
        if graceful:
            for w in self.workers.values():
                if w.id in hung or w.stage not in (WorkerStage.LISTENING, WorkerStage.LEAVING):
                    w.hung = w.id in hung
                    self._emit(L.Kill(w.id, "SIGKILL"))
                    w.stage = WorkerStage.LEAVING
            self.stop_stage, self.handed_out = "handout", False
            self._set_timer(("handout",), min(HANDOUT, self.config.graceful_timeout))
        elif self.stop_stage not in ("fast", "final"):  # a second SIGINT does not push the end back
            for w in self.workers.values():
                listening = w.stage is WorkerStage.LISTENING
                self._emit(L.Kill(w.id, "SIGQUIT" if listening else "SIGKILL"))
                w.stage = WorkerStage.LEAVING
            for name in [n for n in self.timers if n[0] in ("handout", "drain")]:
                self._cancel(name)
            self.stop_stage = "fast"
            if ("stop",) not in self.timers:  # one already set ends sooner than the bound
                self._set_timer(("stop",), FAST)
        self._stop_progress()

    def _begin_stopping(self: Supervisor, graceful: bool, quiet: bool, delay: float = 0.0) -> None:
        """``delay``: the drain delay, serving on (StopAccepting comes after it)."""
        self._emit(L.Notify(("STOPPING=1", _extend(self.bound() + delay))))
        if not delay:
            self._emit(L.StopAccepting())
        if delay:
            self._log("info", "stopping", f"stopping gracefully after a {delay:g}s drain delay "
                      "(the agent answers drain; still serving)")
        elif not quiet:
            self._log("info", "stopping", "stopping " + ("gracefully" if graceful else "now"))
        for name in [n for n in self.timers if n[0] in ("boot", "respawn", "worker-boot", "unserved")]:
            self._cancel(name)
        requests = self.queued + self.reading
        for gen in self.generations.values():
            requests += gen.requests
            gen.requests, gen.replaced = [], None
            if gen.status is GenStatus.BOOTING:
                gen.status = GenStatus.FAILED
        self.queued, self.reading, self.attempt = [], [], 0
        self._answer(requests, False, "stopping")

    def _handed_out(self: Supervisor, event: L.QueueEmpty) -> None:
        self.handed_out = True
        self._stop_progress()

    def _stopping_worker_gone(self: Supervisor, w: Any) -> None:
        if self.stop_stage == "handout":
            self.handed_out = False  # its rr window goes back to the queue: hand it out again
        self._stop_progress()

    def _stop_progress(self: Supervisor) -> None:
        if not self.workers:
            self._exit()
        elif (self.stop_stage == "handout" and self.handed_out
              and not any(w.hung for w in self.workers.values())):
            self._leave()

    def _timer_handout(self: Supervisor) -> None:
        if self.stop_stage == "handout":
            self._leave()

    def _leave(self: Supervisor) -> None:
        """Everything accepted is handed out: every worker drains and leaves."""
        self._cancel(("handout",))
        self.stop_stage = "leave"
        for w in self.workers.values():
            if w.stage is WorkerStage.LISTENING:
                self._retire_worker(w)
        self._set_timer(("stop",), self._drain_max() + 1)

    def _timer_stop(self: Supervisor) -> None:
        for w in self.workers.values():
            self._emit(L.Kill(w.id, "SIGKILL"))
        for name in [n for n in self.timers if n[0] in ("drain", "handout")]:
            self._cancel(name)
        self.stop_stage = "final"
        self._set_timer(("stop-final",), FINAL)

    def _timer_stop_final(self: Supervisor) -> None:
        left = sorted(self.workers)
        self._log("error", "stop_timeout", f"workers {left} not reaped after SIGKILL; exiting anyway")
        self._exit()

    def _exit(self: Supervisor) -> None:
        for name in list(self.timers):
            self._cancel(name)
        self.phase, self.stop_stage = Phase.STOPPED, None
        self._emit(L.Exit(self.exit_code))


def _extend(seconds: float) -> str:
    return f"EXTEND_TIMEOUT_USEC={max(1, int((seconds + 5) * 1_000_000))}"
