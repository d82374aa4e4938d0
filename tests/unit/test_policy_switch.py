"""A reload that changes policy: each worker keeps its generation's policy, connections follow
the one in effect, and what an unused rr policy still queues is handed on."""

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
