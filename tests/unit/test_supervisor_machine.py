"""Stateful property test of the supervisor core: random mixes of every lifecycle event.

A model of the shell (processes, a virtual clock, loop timers) feeds the pure
core every kind of event in random order (signals, reloads and their config
reads, worker online/listening/boot errors/exits/spawn failures/silence,
timers) and checks the issue's invariants after each step.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sockserve.config import make_config
from sockserve.master import lifecycle as L
from sockserve.master.generations import GenStatus, WorkerStage
from sockserve.master.lifecycle import Phase
from sockserve.master.supervisor import Supervisor

CONFIG = make_config({"workers": 2, "boot_timeout": 5, "graceful_timeout": 3, "restart_delay_max": 2,
                      "stable_after": 10, "worker_timeout": 2})
KINDS = ("crashed", "killed", "boot_failure", "timeout")


class Shell:
    """What the I/O shell would do with the core's actions, in virtual time."""

    def __init__(self) -> None:
        self.core = Supervisor(CONFIG)
        self.clock = 0.0
        self.timers: dict[tuple, float] = {}
        self.procs: dict[int, dict] = {}  # live processes
        self.reads: list[int] = []
        self.results: dict[object, list[bool]] = {}
        self.exit_code: int | None = None
        self.stop_deadline: float | None = None
        self.promoted: list[int] = []
        self.last_failure: str | None = None  # the last reload_failed's reason, until a promotion
        self.fed = 0

    def feed(self, event: L.Event) -> list[L.Action]:
        self.fed += 1
        before = self.core.phase
        _, allowed = L.outcome(before, type(event).__name__)
        actions = self.core.handle(event)
        assert self.core.phase in allowed, f"{before} --{event}--> {self.core.phase} not in the table"
        if self.stop_deadline is None and self.core.phase in (Phase.STOPPING, Phase.STOPPED):
            self.stop_deadline = self.clock + self.core.bound()
        for action in actions:
            self.apply(action)
        return actions

    def apply(self, a: L.Action) -> None:
        if isinstance(a, L.Spawn):
            assert a.worker not in self.procs
            self.procs[a.worker] = {"gen": a.generation, "online": False, "listening": False,
                                    "leaving": False, "born": self.clock}
        elif isinstance(a, (L.Kill, L.Disconnect)):
            self.procs[a.worker]["leaving"] = True
        elif isinstance(a, L.SetTimer):
            self.timers[a.name] = self.clock + a.delay
        elif isinstance(a, L.CancelTimer):
            del self.timers[a.name]
        elif isinstance(a, L.ReadConfig):
            self.reads.append(a.attempt)
        elif isinstance(a, L.ReloadResult):
            self.results.setdefault(a.request, []).append(a.ok)
        elif isinstance(a, L.Promote):
            self.promoted.append(a.generation)
            self.last_failure = None if len(self.promoted) > 1 else self.last_failure
        elif isinstance(a, L.Log) and a.event == "reload_failed":
            self.last_failure = a.message.removeprefix("reload: ")
        elif isinstance(a, L.Exit):
            assert self.exit_code is None, "exit twice"
            self.exit_code = a.code

    def exit_worker(self, wid: int, kind: str) -> None:
        proc = self.procs.pop(wid)
        kind = "disconnected" if proc["leaving"] else kind
        self.feed(L.Exited(wid, kind, 0 if kind == "disconnected" else 1, kind, self.clock - proc["born"]))

    def fire_next_timer(self) -> None:
        name, due = min(self.timers.items(), key=lambda item: item[1])
        self.clock = max(self.clock, due)
        del self.timers[name]
        self.feed(L.Timer(name))


class SupervisorMachine(RuleBasedStateMachine):
    @initialize(healthy=st.sampled_from((True, True, True, False)))
    def start(self, healthy) -> None:
        self.shell = Shell()
        self.next_request = 0
        self.shell.feed(L.Start())
        if healthy:  # most runs get past the start; the rest overlap it with everything
            self.booting_workers_listen()

    def late(self) -> bool:
        """Stops only after some history, so most runs get far enough to overlap things."""
        return self.shell.fed > 15

    # ------------------------------------------------------------ signals and control
    @precondition(lambda self: self.late())
    @rule(hung=st.sets(st.integers(0, 3), max_size=2))
    def term(self, hung) -> None:
        listening = sorted(w for w, p in self.shell.procs.items() if p["listening"])
        self.shell.feed(L.Term(tuple(listening[i] for i in hung if i < len(listening))))

    @precondition(lambda self: self.late())
    @rule()
    def interrupt(self) -> None:
        self.shell.feed(L.Int())

    @rule()
    def reload(self) -> None:
        self.next_request += 1
        self.shell.feed(L.Reload(self.next_request))

    @rule(grow=st.booleans())
    def resize(self, grow) -> None:
        self.shell.feed(L.Ttin() if grow else L.Ttou())

    @precondition(lambda self: self.shell.reads)
    @rule(ok=st.booleans(), workers=st.integers(1, 3), policy=st.sampled_from(("rr", "shared")))
    def config_read(self, ok, workers, policy) -> None:
        attempt = self.shell.reads.pop(0)
        config = replace(CONFIG, workers=workers, policy=policy)
        self.shell.feed(L.ConfigRead(attempt, config) if ok else L.ConfigRead(attempt, error="bad"))

    # ------------------------------------------------------------ workers
    @precondition(lambda self: self.shell.procs)
    @rule(data=st.data())
    def worker_event(self, data) -> None:
        wid = data.draw(st.sampled_from(sorted(self.shell.procs)))
        proc = self.shell.procs[wid]
        what = data.draw(st.sampled_from(("progress",) * 4 + ("boot_error", "exit", "spawn_failed",
                                                               "silent")))
        if what == "progress" and not proc["online"]:
            proc["online"] = True
            self.shell.feed(L.Online(wid))
        elif what == "progress":
            proc["listening"] = True
            self.shell.feed(L.Listening(wid))
        elif what == "boot_error" and not proc["listening"]:
            self.shell.feed(L.BootError(wid, "app broken"))
        elif what == "exit":
            self.shell.exit_worker(wid, data.draw(st.sampled_from(KINDS)))
        elif what == "spawn_failed" and not proc["online"]:
            del self.shell.procs[wid]
            self.shell.feed(L.SpawnFailed(wid, "[Errno 24] Too many open files"))
        elif what == "silent" and proc["listening"]:
            self.shell.feed(L.Silent(wid, "silent"))

    @precondition(lambda self: any(not p["listening"] for p in self.shell.procs.values()))
    @rule()
    def booting_workers_listen(self) -> None:
        for wid, proc in list(self.shell.procs.items()):
            if not proc["listening"] and not proc["leaving"] and wid in self.shell.procs:
                if not proc["online"]:
                    proc["online"] = True
                    self.shell.feed(L.Online(wid))
                proc["listening"] = True
                self.shell.feed(L.Listening(wid))

    @precondition(lambda self: any(p["leaving"] for p in self.shell.procs.values()))
    @rule()
    def leaving_worker_exits(self) -> None:
        self.shell.exit_worker(next(w for w, p in self.shell.procs.items() if p["leaving"]), "crashed")

    @precondition(lambda self: self.shell.core.wants_queue_empty)
    @rule()
    def queue_empty(self) -> None:
        self.shell.feed(L.QueueEmpty())

    @precondition(lambda self: self.shell.timers)
    @rule()
    def timer(self) -> None:
        self.shell.fire_next_timer()

    # ------------------------------------------------------------ whole scenarios
    @precondition(lambda self: self.shell.core.phase is Phase.RUNNING)
    @rule()
    def a_good_reload_succeeds(self) -> None:
        """After any history, a reload whose workers behave succeeds."""
        self.next_request += 1
        request, shell = self.next_request, self.shell
        shell.feed(L.Reload(request))
        for _ in range(200):
            if request in shell.results:
                break
            if shell.reads:
                shell.feed(L.ConfigRead(shell.reads.pop(0), CONFIG))
            elif booting := [w for w, p in shell.procs.items() if not p["listening"] and not p["leaving"]]:
                shell.procs[booting[0]]["online"] = shell.procs[booting[0]]["listening"] = True
                shell.feed(L.Online(booting[0]))
                shell.feed(L.Listening(booting[0]))
            elif leaving := [w for w, p in shell.procs.items() if p["leaving"]]:
                shell.exit_worker(leaving[0], "crashed")
            else:
                shell.fire_next_timer()
        assert shell.results[request] == [True]

    @precondition(lambda self: self.late())
    @rule()
    def a_stop_ends_within_its_bound(self) -> None:
        """Whatever is going on, SIGTERM ends the master within the bound, even if no worker leaves."""
        shell = self.shell
        shell.feed(L.Term())
        for _ in range(500):
            if shell.exit_code is not None:
                break
            shell.fire_next_timer()  # no worker ever exits: the timers alone end the stop
        assert shell.core.phase is Phase.STOPPED and shell.exit_code is not None
        assert shell.clock <= shell.stop_deadline + 1e-9
        assert set(shell.results) == set(range(1, self.next_request + 1)), "a reload never answered"

    # ------------------------------------------------------------ invariants
    @invariant()
    def workers_belong_to_known_generations(self) -> None:
        core = self.shell.core
        if core.phase is not Phase.STOPPED:  # after Exit the shell kills what is left
            assert set(core.workers) == set(self.shell.procs)  # none forgotten, none invented
        assert all(w.generation in core.generations for w in core.workers.values())

    @invariant()
    def at_most_one_generation_serves(self) -> None:
        serving = [g for g in self.shell.core.generations.values() if g.status is GenStatus.SERVING]
        assert len(serving) <= 1
        if serving:
            assert self.shell.core.serving == serving[0].number == self.shell.promoted[-1]

    @invariant()
    def status_describes_what_is_in_effect(self) -> None:
        core = self.shell.core
        summary = core.summary()
        assert summary["state"] == core.phase.value
        if core.serving is not None and core.serving in core.generations:
            gen = core.generations[core.serving]
            assert summary["generation"] == gen.number and summary["size"] == gen.size
            assert summary["policy"] == gen.config.policy == core.config.policy
            listening = [w for w, p in self.shell.procs.items() if p["gen"] == gen.number
                         and core.workers[w].stage is WorkerStage.LISTENING]
            assert summary["listening"] == len(listening) <= len(self.shell.procs)
        if core.watchdog_ok():
            assert summary["listening"] >= 1
        assert summary["last_reload_error"] == self.shell.last_failure  # STATUS= says it until a success

    @invariant()
    def timers_agree_and_something_always_moves(self) -> None:
        core, shell = self.shell.core, self.shell
        assert core.timers == set(shell.timers)
        kinds = {name[0] for name in core.timers}
        if core.phase is Phase.STARTING:
            assert "boot" in kinds
        elif core.phase is Phase.RELOADING:
            assert core.attempt in shell.reads or "boot" in kinds
        elif core.phase is Phase.STOPPING:
            assert kinds & {"handout", "stop", "stop-final"}
            assert shell.clock <= shell.stop_deadline + 1e-9
        elif core.phase is Phase.STOPPED:
            assert shell.exit_code is not None and not core.timers

    @invariant()
    def wanted_slots_are_filled_or_waiting(self) -> None:
        core = self.shell.core
        if core.phase not in (Phase.RUNNING, Phase.RELOADING):
            return
        for gen in core.generations.values():
            if gen.status not in (GenStatus.SERVING, GenStatus.BOOTING):
                continue
            for slot in range(gen.size):
                filled = any(w.slot == slot and w.stage is not WorkerStage.LEAVING
                             for w in core.members(gen.number))
                waiting = ("respawn", gen.number, slot) in core.timers
                assert filled or waiting, f"slot {slot} of generation {gen.number} forgotten"

    @invariant()
    def failed_and_retired_generations_are_leaving(self) -> None:
        core = self.shell.core
        if core.phase not in (Phase.RUNNING, Phase.RELOADING):
            return  # a stop ends every generation its own way (see the stop invariants)
        for gen in core.generations.values():
            if gen.status in (GenStatus.FAILED, GenStatus.RETIRING):
                assert core.members(gen.number), "an empty old generation is forgotten"
                assert all(w.stage is WorkerStage.LEAVING for w in core.members(gen.number))
        if core.phase is Phase.RUNNING:
            assert core.attempt == 0 and core._booting() is None
            assert not core.queued, "a queued reload waits while nothing else is under way"

    @invariant()
    def phases_seen(self) -> None:
        event(f"phase {self.shell.core.phase.value}, {len(self.shell.core.generations)} generations")

    @invariant()
    def each_request_is_answered_once(self) -> None:
        assert all(len(r) == 1 for r in self.shell.results.values())


SupervisorMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestSupervisorMachine = SupervisorMachine.TestCase


def test_the_table_names_a_handler_for_every_phase_and_event():
    for phase in Phase:
        for name in L.EVENTS:
            handler, then = L.outcome(phase, name)
            assert handler == "ignore" or hasattr(Supervisor, "_" + handler), (phase, name, handler)
            assert then


def test_the_docs_show_the_table():
    import pathlib

    docs = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    for name in L.EVENTS:
        cells = []
        for phase in Phase:
            handler, then = L.outcome(phase, name)
            after = "/".join(p.value for p in then[1:])
            cells.append("—" if handler == "ignore" else (f"{handler} → {after}" if after else handler))
        assert f"| {name} | " + " | ".join(cells) + " |" in docs, name
