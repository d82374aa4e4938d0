"""The master's lifecycle as one state machine, pure: events in, actions out.

``Supervisor.handle(event) -> [action]``.  lifecycle.TABLE says which handler an
event runs in each phase; this module is those handlers.  No I/O, no clock:
deadlines are timers the core asks the shell for (SetTimer), and the shell
answers with Timer events.  Exit codes are the README's (0 stop, 1 runtime
failure, 6 the app cannot load).  The stop sequence lives in supervisor_stop.py.
"""

from __future__ import annotations

from typing import Any

from . import lifecycle as L
from .generations import Generation, GenStatus, Worker, WorkerStage
from .lifecycle import Phase
from .supervisor_recycle import RecycleMixin
from .supervisor_stop import StopMixin
from .supervisor_workers import WorkersMixin

G, W = GenStatus, WorkerStage


def extend_line(seconds: float) -> str:
    """EXTEND_TIMEOUT_USEC= for what is in progress, plus 5 s for our own start-up and exit."""
    return f"EXTEND_TIMEOUT_USEC={max(1, int((seconds + 5) * 1_000_000))}"


class Supervisor(WorkersMixin, StopMixin, RecycleMixin):
    """Phase × generations × slots.  ``config``: the start's Config (``workers``, timeouts,
    ``restart_delay_max``, ``stable_after``, ``policy``)."""

    def __init__(self, config: Any) -> None:
        self.config = config  # the serving generation's: what is in effect
        self.phase = Phase.STARTING
        self.generations: dict[int, Generation] = {}
        self.workers: dict[int, Worker] = {}
        self.serving: int | None = None
        self.timers: set[tuple[Any, ...]] = set()
        self.last_reload_error: str | None = None  # why the last reload failed (None: it did not)
        self.queued: list[Any] = []  # reload requests waiting for a start or a reload to end
        self.reading: list[Any] = []  # requests whose config is being read
        self.recycling: dict[int, tuple[int, str]] = {}  # successor -> (recycled worker, reason)
        self.recycled: dict[str, int] = {}  # recycles done, by reason
        self.attempt = 0  # the ReadConfig in flight (0: none)
        self.exit_code = 0
        self.stop_stage: str | None = None  # "delay" (drain_delay), "handout", "leave", "fast", "final"
        self._delayed_hung: tuple[int, ...] = ()  # Term's hung workers, for after the drain delay
        self.handed_out = False
        self._attempts = 0
        self._next_worker = 1
        self._next_generation = 1
        self._out: list[L.Action] = []

    # ------------------------------------------------------------ the one entry
    def handle(self, event: L.Event) -> list[L.Action]:
        self._out = []
        name, _ = L.outcome(self.phase, type(event).__name__)
        if name != "ignore":
            getattr(self, "_" + name)(event)
        self._watch_unserved()
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------ what is in effect
    def summary(self) -> dict[str, Any]:
        """What STATUS= and statistics() show: only what is in effect."""
        number = self.serving if self.serving is not None else min(self.generations, default=0)
        gen = self.generations.get(number)
        listening = sum(1 for w in self.members(number) if w.stage is W.LISTENING)
        return {"state": self.phase.value, "generation": number, "policy": self.config.policy,
                "size": gen.size if gen else 0, "listening": listening,
                "last_reload_error": self.last_reload_error}

    def watchdog_ok(self) -> bool:
        """WATCHDOG=1 only while running with a listening worker in the serving generation."""
        return (self.phase in (Phase.RUNNING, Phase.RELOADING)
                and any(w.stage is W.LISTENING for w in self.members(self.serving)))

    @property
    def wants_queue_empty(self) -> bool:
        return self.phase is Phase.STOPPING and self.stop_stage == "handout" and not self.handed_out

    def members(self, number: int | None) -> list[Worker]:
        return [w for w in self.workers.values() if w.generation == number]

    # ------------------------------------------------------------ helpers
    def _emit(self, *actions: L.Action) -> None:
        self._out.extend(actions)

    def _log(self, level: str, event: str, message: str, **fields: Any) -> None:
        self._emit(L.Log(level, event, message, fields))

    def _set_timer(self, name: tuple[Any, ...], delay: float) -> None:
        self.timers.add(name)
        self._emit(L.SetTimer(name, delay))

    def _cancel(self, name: tuple[Any, ...]) -> None:
        if name in self.timers:
            self.timers.discard(name)
            self._emit(L.CancelTimer(name))

    def _new_generation(self, config: Any, size: int) -> Generation:
        gen = Generation(self._next_generation, config, size)
        self._next_generation += 1
        self.generations[gen.number] = gen
        for slot in range(size):
            self._spawn(gen, slot)
        self._set_timer(("boot", gen.number), config.boot_timeout)
        return gen

    def _spawn(self, gen: Generation, slot: int) -> None:
        worker = Worker(self._next_worker, gen.number, slot)
        self._next_worker += 1
        self.workers[worker.id] = worker
        self._emit(L.Spawn(worker.id, gen.number, slot, gen.config))
        if gen.status is G.SERVING:  # a booting generation has its own boot timer
            self._set_timer(("worker-boot", worker.id), gen.config.boot_timeout)

    def _complete(self, gen: Generation) -> bool:
        listening = {w.slot for w in self.members(gen.number) if w.stage is W.LISTENING}
        return listening >= set(range(gen.size))

    def _retire_worker(self, w: Worker, graceful: bool = True) -> None:
        """Ask ``w`` to leave for good: disconnect (drain) if it listens, else kill."""
        if w.stage is W.LEAVING:
            return
        self._cancel(("worker-boot", w.id))
        if graceful and w.stage is W.LISTENING:
            self._emit(L.Disconnect(w.id))
            # graceful_timeout, then the worker's own shutdown budget (it exits by itself), then SIGKILL
            self._set_timer(("drain", w.id), self.generations[w.generation].config.drain_kill_after())
        else:
            failed = self.generations[w.generation].status is G.FAILED
            self._emit(L.Kill(w.id, "SIGKILL", "its generation failed to load" if failed else ""))
        w.stage = W.LEAVING

    def _retire_generation(self, gen: Generation, status: GenStatus, graceful: bool = True) -> None:
        gen.status = status
        self._cancel(("boot", gen.number))
        for slot in gen.slots:
            self._cancel(("respawn", gen.number, slot))
            gen.slots[slot].waiting = False
        for w in self.members(gen.number):
            self._retire_worker(w, graceful)
        self._forget_if_empty(gen)

    def _forget_if_empty(self, gen: Generation) -> None:
        if gen.status in (G.RETIRING, G.FAILED) and not self.members(gen.number):
            del self.generations[gen.number]
            for other in list(self.generations.values()):
                if other.replaced == gen.number:
                    other.replaced = None
                    self._answer(other.requests, True,
                                 f"generation {other.number} serving, generation {gen.number} drained")
                    other.requests = []

    def _answer(self, requests: list[Any], ok: bool, message: str, superseded: bool = False) -> None:
        for request in requests:
            self._emit(L.ReloadResult(request, ok, message, superseded))

    # ------------------------------------------------------------ start
    def _boot(self, event: L.Start) -> None:
        self._emit(L.Notify((extend_line(self.config.boot_timeout),)), L.StartAccepting())
        self._new_generation(self.config, self.config.workers)

    def _ready(self, gen: Generation) -> None:
        """Every slot of the booting ``gen`` listens: it serves from now on."""
        old = self.generations.get(self.serving) if self.serving is not None else None
        self._cancel(("boot", gen.number))
        gen.status, self.serving, self.config = G.SERVING, gen.number, gen.config
        self._emit(L.Promote(gen.number, gen.config))
        for w in self.members(gen.number):
            if w.stage is not W.LISTENING and w.stage is not W.LEAVING:
                self._set_timer(("worker-boot", w.id), gen.config.boot_timeout)
        if old is not None:
            self.last_reload_error = None  # a reload succeeded: the last one did not fail
        if old is None:
            self.phase = Phase.RUNNING
            self._emit(L.Notify(("READY=1", "STATUS")))
            self._log("info", "ready", "ready")  # the shell adds STATUS and the listeners
        else:
            gen.replaced = old.number
            # ``old`` may still wait for its own predecessor to drain: its requests are answered
            # with ours (they asked for code read before our config was: ours serves it too)
            gen.requests, old.requests = gen.requests + old.requests, []
            self.phase = Phase.RUNNING
            self._emit(L.Notify(("READY=1", "STATUS", "WATCHDOG=1")))
            self._log("info", "reload_promoted",
                      f"reload: generation {gen.number} serving, generation {old.number} draining")
            self._retire_generation(old, G.RETIRING)
        self._run_queued()

    # ------------------------------------------------------------ reload
    def _queue_reload(self, event: L.Reload) -> None:
        self.queued.append(event.request)
        during = "the start" if self.phase is Phase.STARTING else "the reload under way"
        self._log("info", "reload_queued", f"reload requested during {during}: it runs once that ends")

    def _begin_reload(self, event: L.Reload) -> None:
        self._begin([event.request])

    def _refuse_reload(self, event: L.Reload) -> None:
        self._answer([event.request], False, f"cannot reload while {self.phase.value}",
                     superseded=self.phase in (Phase.STOPPING, Phase.STOPPED))

    def _begin(self, requests: list[Any]) -> None:
        self.phase = Phase.RELOADING
        self._attempts += 1
        self.attempt, self.reading = self._attempts, requests
        self._emit(L.Notify(("RELOADING=1", "STATUS=reloading")))
        self._log("info", "reload_start", "reload: reading the configuration")
        self._emit(L.ReadConfig(self.attempt))

    def _run_queued(self) -> None:
        if self.queued and self.phase is Phase.RUNNING:
            requests, self.queued = self.queued, []
            self._log("info", "reload_dequeued", f"reload: carrying out {len(requests)} queued request(s)")
            self._begin(requests)

    def _config_read(self, event: L.ConfigRead) -> None:
        if event.attempt != self.attempt:
            return
        requests, self.reading, self.attempt = self.reading, [], 0
        if event.error is not None:
            self._reload_failed(requests, f"configuration: {event.error}")
            return
        config, serving = event.config, self.generations[self.serving]  # type: ignore[index]
        size = config.workers if config.workers != serving.config.workers else serving.size
        self._emit(L.Notify((extend_line(config.boot_timeout),)))
        self._log("info", "reload_boot", f"reload: starting generation {self._next_generation}")
        gen = self._new_generation(config, size)
        gen.requests = requests

    def _reload_failed(self, requests: list[Any], message: str) -> None:
        self._answer(requests, False, message)
        self._log("error", "reload_failed", f"reload: {message}")
        self.last_reload_error = message  # in STATUS= until a reload succeeds
        self.phase = Phase.RUNNING
        self._emit(L.Notify(("READY=1", "STATUS")))
        self._run_queued()

    def _fail_generation(self, gen: Generation, reason: str) -> None:
        requests, gen.requests, gen.error = gen.requests, [], reason
        self._retire_generation(gen, G.FAILED, graceful=False)
        self._reload_failed(requests, f"generation {gen.number} failed, generation {self.serving} "
                                      f"keeps serving: {reason}")

    def _booting(self) -> Generation | None:
        return next((g for g in self.generations.values() if g.status is G.BOOTING), None)
