"""Property-based fuzzing of the pure protocol pieces: codec, WorkerPeer, RoundRobin."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rr_impls import IMPLS

from sockserve.cluster import protocol
from sockserve.cluster.peer import TRANSITIONS, WorkerPeer, WorkerState
from sockserve.cluster.protocol import Message, ProtocolError
from sockserve.master.round_robin import Handoff, Release, RoundRobin

SENDERS = st.sampled_from(["worker", "master"])
KEYS = ("http", "admin")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


def records() -> st.SearchStrategy[bytes]:
    """Any bytes, and near-misses: a valid type byte before a JSON body of any shape."""
    typed = st.builds(lambda code, body: bytes((code,)) + json.dumps(body).encode(),
                      st.integers(0, 12), st.lists(JSON_VALUES, max_size=5))
    return st.binary(max_size=200) | typed


@settings(max_examples=300, deadline=None)
@given(record=records(), nfds=st.integers(0, protocol.MAX_FDS), sender=SENDERS)
def test_decode_returns_a_message_or_raises_protocol_error(record, nfds, sender):
    try:
        msg = protocol.decode(record, nfds, sender)
    except ProtocolError:
        return
    assert isinstance(msg, Message)
    assert type(msg).sender in (sender, "both") and msg.nfds() == nfds
    assert protocol.decode(protocol.encode(msg), nfds, sender) == msg  # what decodes re-encodes


WORKER_MESSAGES = st.one_of(
    st.builds(protocol.Online, st.sampled_from([1, 2])),
    st.builds(protocol.QueryServer, st.sampled_from([*KEYS, "other"])),
    st.builds(protocol.Listening, st.sampled_from([*KEYS, "other"])),
    st.builds(protocol.Close, st.sampled_from([*KEYS, "other"])),
    st.builds(protocol.Ack, st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple), st.booleans()),
    st.builds(protocol.Heartbeat, st.integers(0, 9), st.integers(0, 9)),
    st.builds(protocol.UserMessage, JSON_VALUES),
    st.builds(protocol.BootError, st.text(max_size=5)),
    st.sampled_from(["disconnect", "exit"]),
)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(WORKER_MESSAGES, max_size=20))
def test_worker_peer_follows_the_state_table_or_raises_protocol_error(events):
    peer = WorkerPeer(1, KEYS)
    for event in events:
        before = peer.state
        name = event if isinstance(event, str) else type(event).__name__
        try:
            after = peer.event(event) if isinstance(event, str) else peer.receive(event)
        except ProtocolError:
            return  # the master closes the channel; nothing after counts
        assert isinstance(after, WorkerState) and after is peer.state
        allowed = TRANSITIONS[(before, name)]
        assert after is allowed or (allowed is WorkerState.ONLINE and after is WorkerState.LISTENING)
        if after is WorkerState.LISTENING and before is not WorkerState.LISTENING:
            assert peer.listening == set(KEYS)


OPS = st.lists(st.tuples(st.sampled_from(["add", "stop", "remove", "distribute", "ack"]),
                         st.integers(1, 3), st.booleans(), st.integers(0, 50)), max_size=60)


class Ledger:
    """Where every connection is, checked against each action the policy returns."""

    def __init__(self, rr: RoundRobin) -> None:
        self.rr = rr
        self.held: dict[int, tuple[int, int]] = {}  # conn -> (worker, seq)
        self.released: set[int] = set()
        self.distributed: set[int] = set()

    def apply(self, actions) -> None:
        for action in actions:
            if isinstance(action, Handoff):
                assert action.conn not in self.held, f"{action.conn} handed to two workers at once"
                assert action.conn not in self.released
                self.held[action.conn] = (action.worker_id, action.seq)
            else:
                assert isinstance(action, Release)
                assert action.conn not in self.released, f"{action.conn} released twice"
                self.released.add(action.conn)

    def check(self) -> None:
        queued = len(self.distributed) - len(self.released) - len(self.held)
        assert queued >= 0 and self.rr.waiting() == len(self.held) + queued


def step(rr: RoundRobin, ledger: Ledger, op: str, worker: int, accepted: bool, pick: int) -> None:
    if op == "distribute":
        conn = len(ledger.distributed)
        ledger.distributed.add(conn)
        ledger.apply(rr.distribute(conn))
    elif op == "ack":
        mine = sorted(c for c, (w, _) in ledger.held.items() if w == worker)
        if not mine:  # an ack for a seq this worker does not hold
            with pytest.raises(ProtocolError):
                rr.ack(worker, 10**6 + pick, accepted)
            return
        _, seq = ledger.held.pop(mine[pick % len(mine)])  # released, or back in the queue
        ledger.apply(rr.ack(worker, seq, accepted))
    else:
        if op == "remove":
            for conn in [c for c, (w, _) in ledger.held.items() if w == worker]:
                del ledger.held[conn]  # the policy queues it again
        ledger.apply(getattr(rr, op)(worker))


@IMPLS
@settings(max_examples=300, deadline=None)
@given(ops=OPS, window=st.integers(1, 3))
def test_round_robin_never_loses_or_duplicates_a_connection(make_rr, ops, window):
    rr = make_rr(window)
    ledger = Ledger(rr)
    for op in ops:
        step(rr, ledger, *op)
        ledger.check()
    drain_to_one_worker(rr, ledger)
    assert ledger.released == ledger.distributed  # nothing lost, nothing released twice


def drain_to_one_worker(rr: RoundRobin, ledger: Ledger) -> None:
    """Every worker leaves, then worker 9 takes and accepts all that is left."""
    for worker in (1, 2, 3):
        for conn in [c for c, (w, _) in ledger.held.items() if w == worker]:
            del ledger.held[conn]
        ledger.apply(rr.remove(worker))
    ledger.check()
    ledger.apply(rr.add(9))
    for _ in range(len(ledger.distributed) + 1):
        if not ledger.held:
            break
        conn = min(ledger.held)
        _, seq = ledger.held.pop(conn)
        ledger.apply(rr.ack(9, seq, True))
    assert rr.waiting() == 0 and not ledger.held
