"""A reload that changes policy: each worker keeps its generation's policy, connections follow
the one in effect, and what an unused rr policy still queues is handed on."""

from rr_impls import IMPLS

from sockserve.master.policy_switch import PolicySwitch
from sockserve.master.round_robin import Handoff, Release
from sockserve.master.shared import make_policy


def switch(mode: str) -> PolicySwitch:
    return PolicySwitch(mode, lambda m: make_policy(m, 1))


def test_rr_to_shared_keeps_the_old_workers_acks_and_hands_nothing_to_the_new():
    p = switch("rr")
    p.assign(1, "rr")
    p.add(1)
    [handoff] = p.distribute("c1")
    assert isinstance(handoff, Handoff) and handoff.worker_id == 1
    p.assign(2, "shared")
    assert p.add(2) == [] and p.mode == "rr"  # the new worker is shared; rr still in effect
    p.switch("shared")
    assert p.mode == "shared" and p.capacity() == 0  # the master stops accepting
    assert p.ack(1, handoff.seq, True) == [Release("c1")]  # the old worker's ack still lands


def test_shared_to_rr_hands_only_to_the_new_generation():
    p = switch("shared")
    p.assign(1, "shared")
    p.add(1)
    p.assign(2, "rr")
    p.add(2)
    p.switch("rr")
    assert [a.worker_id for a in p.distribute("c1")] == [2]


def test_an_unused_rr_policy_hands_its_queue_to_the_one_in_effect():
    p = switch("rr")
    p.assign(1, "rr")
    p.add(1)
    p.distribute("c1")
    assert p.distribute("c2") == []  # window 1: c2 waits in the rr queue
    p.assign(2, "shared")
    p.add(2)
    p.switch("shared")
    assert p.remove(1) == [Release("c1"), Release("c2")]  # shared accepts nothing in the master
    assert p.waiting() == 0


@IMPLS
def test_a_switch_around_a_running_rr_keeps_its_workers_and_retires_its_queue(make_rr):
    rr = make_rr(1)  # the Dispatcher's policy until a reload brings another (the C engine, too)
    rr.add(1)
    [handoff] = rr.distribute("c1")
    assert rr.distribute("c2") == []  # waits for room
    p = PolicySwitch.around(rr, lambda m: make_policy(m, 1), [1])
    p.assign(2, "shared")
    p.add(2)
    p.switch("shared")
    assert p.capacity() == 0 and p.waiting() == 2
    assert p.ack(1, handoff.seq, False) == []  # worker 1 is still rr's: c1 queues behind c2
    assert p.remove(1) == [Release("c1"), Release("c2")]  # rr retired: its queue is closed
    assert p.waiting() == 0 and list(p.policies) == ["shared"]


@IMPLS
def test_drain_queue_takes_what_waits_in_order_and_only_that(make_rr):
    rr = make_rr(1)
    rr.add(1)
    [handoff] = rr.distribute("c1")
    rr.distribute("c2")
    rr.distribute("c3", "admin")
    assert rr.drain_queue() == [("c2", ""), ("c3", "admin")] and rr.drain_queue() == []  # with keys
    assert rr.waiting() == 1 and rr.capacity() == 0
    assert rr.ack(1, handoff.seq, True) == [Release("c1")] and rr.capacity() == 1
