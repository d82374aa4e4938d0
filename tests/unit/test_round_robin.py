"""rr policy: fairness, windows, and no accepted connection ever lost (round_robin.py and the C one)."""

import pytest
from rr_impls import IMPLS

from sockserve.cluster.protocol import ProtocolError
from sockserve.master.round_robin import Handoff, Release


def handoffs(actions):
    return [a for a in actions if isinstance(a, Handoff)]


@IMPLS
def test_connections_rotate_evenly_between_workers(make_rr):
    rr = make_rr(window=1)
    rr.add(1)
    rr.add(2)
    counts = {1: 0, 2: 0}
    for conn in range(400):
        (h,) = handoffs(rr.distribute(conn))
        counts[h.worker_id] += 1
        assert rr.ack(h.worker_id, h.seq, True) == [Release(conn)]
    assert counts == {1: 200, 2: 200}


@IMPLS
def test_window_limits_unacked_handoffs_and_queues_the_rest(make_rr):
    rr = make_rr(window=2)
    rr.add(1)
    sent = [handoffs(rr.distribute(c)) for c in "abc"]
    assert [len(s) for s in sent] == [1, 1, 0]
    assert rr.capacity() == -1 and rr.waiting() == 3
    first = sent[0][0]
    actions = rr.ack(1, first.seq, True)
    assert actions[0] == Release("a")
    assert [(h.worker_id, h.conn) for h in handoffs(actions)] == [(1, "c")]


@IMPLS
def test_rejected_connection_is_rehanded_to_another_worker(make_rr):
    rr = make_rr(window=1)
    rr.add(1)
    rr.add(2)
    (h,) = handoffs(rr.distribute("c"))
    (again,) = handoffs(rr.ack(h.worker_id, h.seq, False))
    assert again.conn == "c" and again.rehand and again.worker_id != h.worker_id


@IMPLS
def test_connections_of_a_worker_that_dies_before_acking_are_rehanded(make_rr):
    rr = make_rr(window=4)
    rr.add(1)
    held = [handoffs(rr.distribute(c))[0] for c in "xyz"]
    assert {h.worker_id for h in held} == {1}
    assert rr.remove(1) == []  # nobody to take them yet: they wait, not lost
    assert rr.waiting() == 3
    again = handoffs(rr.add(2))
    assert [h.conn for h in again] == ["x", "y", "z"] and all(h.rehand for h in again)


@IMPLS
def test_stopped_worker_keeps_its_unacked_connections_until_it_acks(make_rr):
    rr = make_rr(window=1)
    rr.add(1)
    (h,) = handoffs(rr.distribute("c"))
    rr.stop(1)
    assert handoffs(rr.distribute("d")) == []
    assert rr.ack(1, h.seq, True) == [Release("c")]


@IMPLS
def test_ack_for_unknown_or_foreign_seq_is_a_protocol_error(make_rr):
    rr = make_rr()
    rr.add(1)
    rr.add(2)
    (h,) = handoffs(rr.distribute("c"))
    with pytest.raises(ProtocolError):
        rr.ack(3 - h.worker_id, h.seq, True)
    with pytest.raises(ProtocolError):
        rr.ack(h.worker_id, 999, True)


def _serve(rr, conns, full=()):
    """Distribute ``conns``; ack at once except for workers in ``full`` (their windows fill)."""
    counts = {}
    for conn in conns:
        for h in handoffs(rr.distribute(conn)):
            counts[h.worker_id] = counts.get(h.worker_id, 0) + 1
            if h.worker_id not in full:
                rr.ack(h.worker_id, h.seq, True)
    return counts


@IMPLS
def test_a_worker_skipped_while_full_catches_up_once_it_has_room(make_rr):
    rr = make_rr(window=2)
    rr.add(1)
    rr.add(2)
    _serve(rr, range(100), full={1})  # worker 1 stalls: 2 un-acked, the rest go to 2
    for seq in [s for s, w in rr._owner.items() if w == 1]:
        rr.ack(1, seq, True)
    _serve(rr, range(100, 400))
    handed = rr._handed[""]  # the default key's rotation
    assert abs(handed[1] - handed[2]) <= 1, handed


@IMPLS
def test_a_joining_worker_starts_level_and_gets_no_burst(make_rr):
    rr = make_rr(window=4)
    rr.add(1)
    rr.add(2)
    _serve(rr, range(1000))
    rr.add(3)
    counts = _serve(rr, range(1000, 1300))
    assert counts == {1: 100, 2: 100, 3: 100}


# ------------------------------------------------------------ one rotation per key (Node's RoundRobinHandle)
def _joined(make_rr, window, *joins):
    """A policy whose workers joined these (worker, key) rotations, in order."""
    rr = make_rr(window=window)
    for worker_id, key in joins:
        rr.add(worker_id, key)
    return rr


@IMPLS
def test_each_keys_connections_go_only_to_the_workers_listening_on_it(make_rr):
    rr = _joined(make_rr, 4, (1, "A"), (2, "B"), (3, "A"), (3, "B"))
    got = {"A": set(), "B": set()}
    for n in range(200):
        key = "AB"[n % 2]
        for h in handoffs(rr.distribute(f"{key}{n}", key)):
            got[key].add(h.worker_id)
            rr.ack(h.worker_id, h.seq, True)
    assert got == {"A": {1, 3}, "B": {2, 3}}
    assert {k: sorted(v.values()) for k, v in rr._handed.items()} == {"A": [50, 50], "B": [50, 50]}


@IMPLS
def test_a_connection_on_a_key_nobody_serves_waits_and_is_never_handed_elsewhere(make_rr):
    rr = _joined(make_rr, 2, (1, "A"))
    assert rr.distribute("b", "B") == [] and rr.waiting() == 1
    assert rr.capacity("B") == -1 and rr.capacity("A") == 2
    (a,) = handoffs(rr.distribute("a", "A"))  # A is served past B's waiting connection
    assert (a.worker_id, a.conn) == (1, "a")
    (b,) = handoffs(rr.add(2, "B"))
    assert (b.worker_id, b.conn, b.rehand) == (2, "b", False)


@IMPLS
def test_a_reject_takes_the_worker_out_of_that_key_only_and_rehands_within_it(make_rr):
    rr = _joined(make_rr, 1, (1, "A"), (1, "B"), (2, "A"))
    (h,) = handoffs(rr.distribute("a", "A"))
    (again,) = handoffs(rr.ack(h.worker_id, h.seq, False))
    assert again.worker_id == 3 - h.worker_id and again.rehand
    rr.ack(again.worker_id, again.seq, True)
    if h.worker_id == 1:  # worker 1 closed A, still serves B
        (b,) = handoffs(rr.distribute("b", "B"))
        assert b.worker_id == 1
    assert set(rr._handed["A"]) == {3 - h.worker_id}


@IMPLS
def test_a_dead_workers_connections_are_rehanded_within_their_keys(make_rr):
    rr = _joined(make_rr, 2, (1, "A"), (1, "B"), (2, "B"))
    held = [handoffs(rr.distribute(c, "A"))[0] for c in ("a1", "a2")]
    assert {h.worker_id for h in held} == {1}
    assert rr.remove(1) == [] and rr.waiting() == 2  # nobody else serves A: they wait
    assert handoffs(rr.distribute("b", "B"))[0].worker_id == 2
    again = handoffs(rr.add(3, "A"))
    assert [(h.worker_id, h.conn, h.rehand) for h in again] == [(3, "a1", True), (3, "a2", True)]


@IMPLS
def test_the_window_is_per_worker_over_every_key(make_rr):
    rr = _joined(make_rr, 1, (1, "A"), (1, "B"))
    (h,) = handoffs(rr.distribute("a", "A"))
    assert rr.capacity() == 0 and rr.capacity("B") == 0
    assert rr.distribute("b", "B") == []  # worker 1's one slot holds "a"
    assert [x.conn for x in handoffs(rr.ack(1, h.seq, True))] == ["b"]


@IMPLS
def test_a_released_key_closes_what_waits_for_it_and_what_comes_back(make_rr):
    rr = _joined(make_rr, 1, (1, "A"))
    (h,) = handoffs(rr.distribute("a1", "A"))
    rr.distribute("a2", "A")
    rr.stop(1, "A")
    assert rr.forget("A") == [Release("a2")]  # Node: RoundRobinHandle.remove closes its handles
    assert rr.ack(1, h.seq, False) == [Release("a1")]  # its listener is gone: closed, not queued
    assert rr.waiting() == 0 and "A" not in rr._handed


@IMPLS
def test_room_counts_each_worker_once_over_its_keys(make_rr):
    # the service: every worker in every listener's rotation; STATUS and the agent check read
    # capacity() as the workers' free window slots (listening x window at most), not x keys
    rr = _joined(make_rr, 3, (1, "http"), (1, "admin"), (2, "http"), (2, "admin"))
    assert rr.capacity() == 6 and rr.capacity("http") == 6
    handoffs(rr.distribute("c", "http"))
    assert rr.capacity() == 5 and rr.capacity("admin") == 5
