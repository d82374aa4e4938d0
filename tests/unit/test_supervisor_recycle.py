"""Recycling in the supervisor core (issue 13): the successor listens before the worker leaves.

Unit cases for the overlaps, and a stateful property test: random mixes of Recycle,
Listening, exits and timers, with the invariant that a recycle never lowers the
number of listening slots of the serving generation and never puts more than two
workers in a slot.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from supervisorsteps import listen

from sockserve.config import make_config
from sockserve.master import lifecycle as L
from sockserve.master.generations import WorkerStage
from sockserve.master.lifecycle import Phase
from sockserve.master.supervisor import Supervisor

CONFIG = make_config({"workers": 2, "boot_timeout": 5, "graceful_timeout": 3, "restart_delay_max": 2})
W = WorkerStage


def running() -> tuple[Supervisor, list[L.Action]]:
    core = Supervisor(CONFIG)
    actions = core.handle(L.Start())
    actions += listen(core, *(a.worker for a in spawned(actions)))
    assert core.phase is Phase.RUNNING
    return core, actions


def spawned(actions: list[L.Action]) -> list[L.Spawn]:
    return [a for a in actions if isinstance(a, L.Spawn)]


def test_successor_listens_before_the_worker_is_disconnected():
    core, _ = running()
    out = core.handle(L.Recycle(1, "max_requests"))
    (spawn,) = spawned(out)
    assert (spawn.generation, spawn.slot) == (1, 0)
    assert not [a for a in out if isinstance(a, (L.Disconnect, L.Kill))]
    assert core.handle(L.Recycle(1, "max_requests")) == []  # already under way
    core.handle(L.Online(spawn.worker))
    out = core.handle(L.Listening(spawn.worker))
    assert L.Disconnect(1) in out and core.workers[1].stage is W.LEAVING
    assert core.recycled == {"max_requests": 1}
    out = core.handle(L.Exited(1, "disconnected", 0, "exited after disconnect", 3.0))
    assert not spawned(out)  # its slot is the successor's


def test_successor_that_dies_leaves_the_worker_serving_and_its_slot_unrefilled():
    core, _ = running()
    (spawn,) = spawned(core.handle(L.Recycle(2, "rss")))
    out = core.handle(L.Exited(spawn.worker, "crashed", 1, "exited unexpectedly", 0.2))
    timers = [a.name for a in out if isinstance(a, L.SetTimer)]
    for name in timers:  # the slot's respawn timer finds it taken by worker 2
        assert not spawned(core.handle(L.Timer(name)))
    assert core.workers[2].stage is W.LISTENING and core.recycling == {}
    assert spawned(core.handle(L.Recycle(2, "rss")))  # it may be tried again


def test_worker_that_dies_first_leaves_its_slot_to_the_successor():
    core, _ = running()
    (spawn,) = spawned(core.handle(L.Recycle(1, "lifetime")))
    out = core.handle(L.Exited(1, "killed", -9, "killed by SIGKILL", 9.0))
    for name in [a.name for a in out if isinstance(a, L.SetTimer)]:
        assert not spawned(core.handle(L.Timer(name)))  # the successor holds the slot
    core.handle(L.Online(spawn.worker))
    out = core.handle(L.Listening(spawn.worker))
    assert not [a for a in out if isinstance(a, (L.Disconnect, L.Kill))]
    assert core.recycled == {}


def test_recycle_is_ignored_outside_running_and_for_old_generations():
    core, _ = running()
    core.handle(L.Reload())
    assert core.phase is Phase.RELOADING
    assert core.handle(L.Recycle(1, "max_requests")) == []
    assert core.handle(L.Recycle(99, "max_requests")) == []


class RecycleMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.core, actions = running()
        self.timers: set[tuple] = set()
        self.procs: set[int] = set()
        self.track(actions)

    def track(self, actions: list[L.Action]) -> list[L.Action]:
        for a in actions:
            if isinstance(a, L.Spawn):
                self.procs.add(a.worker)
            elif isinstance(a, L.SetTimer):
                self.timers.add(a.name)
            elif isinstance(a, L.CancelTimer):
                self.timers.discard(a.name)
        return actions

    def listening_slots(self) -> set[int]:
        core = self.core
        return {w.slot for w in core.members(core.serving) if w.stage is W.LISTENING}

    @rule(data=st.data(), reason=st.sampled_from(["max_requests", "lifetime", "rss", "request_timeout"]))
    def recycle(self, data: st.DataObject, reason: str) -> None:
        if not self.procs:
            return
        before = self.listening_slots()
        out = self.track(self.core.handle(L.Recycle(data.draw(st.sampled_from(sorted(self.procs))), reason)))
        assert not [a for a in out if isinstance(a, (L.Disconnect, L.Kill))]
        assert self.listening_slots() >= before

    @rule(data=st.data(), successor=st.booleans())
    def listen(self, data: st.DataObject, successor: bool) -> None:
        """A booting worker listens (a recycled worker's successor when ``successor`` and any)."""
        waiting = sorted(w.id for w in self.core.workers.values() if w.stage in (W.BOOTING, W.ONLINE)
                         and (not successor or w.id in self.core.recycling))
        if not waiting:
            return
        worker = data.draw(st.sampled_from(waiting))
        before = self.listening_slots()
        self.track(self.core.handle(L.Online(worker)))
        out = self.track(self.core.handle(L.Listening(worker)))
        if self.core.phase is Phase.RUNNING:
            assert self.listening_slots() >= before
        for a in out:
            if isinstance(a, L.Disconnect):  # a recycled worker: its slot listens without it
                old = self.core.workers[a.worker]
                assert any(w.slot == old.slot and w.stage is W.LISTENING and w.id != old.id
                           for w in self.core.members(old.generation))

    @rule(data=st.data(), kind=st.sampled_from(["crashed", "killed", "disconnected"]))
    def exit(self, data: st.DataObject, kind: str) -> None:
        if not self.procs:
            return
        worker = data.draw(st.sampled_from(sorted(self.procs)))
        self.procs.discard(worker)
        self.track(self.core.handle(L.Exited(worker, kind, 1, kind, 1.0)))

    @rule(data=st.data())
    def timer(self, data: st.DataObject) -> None:
        if not self.timers:
            return
        name = data.draw(st.sampled_from(sorted(self.timers, key=repr)))
        self.timers.discard(name)
        self.track(self.core.handle(L.Timer(name)))

    @invariant()
    def at_most_two_workers_per_slot(self) -> None:
        if not hasattr(self, "core") or self.core.serving is None:
            return
        slots: dict[int, int] = {}
        for w in self.core.members(self.core.serving):
            if w.stage is not W.LEAVING:
                slots[w.slot] = slots.get(w.slot, 0) + 1
        assert all(n <= 2 for n in slots.values()), slots

    @invariant()
    def successors_are_in_their_workers_slot(self) -> None:
        for successor, (old, _) in getattr(self, "core", Supervisor(CONFIG)).recycling.items():
            s, o = self.core.workers.get(successor), self.core.workers.get(old)
            if s is not None and o is not None:
                assert (s.generation, s.slot) == (o.generation, o.slot)


RecycleMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_recycle_machine = RecycleMachine.TestCase
