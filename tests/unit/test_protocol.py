"""The sans-I/O codec and the worker state table."""

import pytest

from sockserve.cluster import peer as s
from sockserve.cluster import protocol as p


@pytest.mark.parametrize("msg, sender", [
    (p.Online(3, 1234), "worker"), (p.QueryServer("http"), "worker"),
    (p.ServerReply("http", "rr", "127.0.0.1:8000"), "master"), (p.Listening("http"), "worker"),
    (p.NewConn("http", (7,)), "master"), (p.NewConn("http", (7, 9)), "master"),
    (p.Ack((7,), True), "worker"), (p.Ack((7, 9), False), "worker"), (p.Close("http"), "worker"),
    (p.Disconnect(), "master"), (p.Heartbeat(2, 99), "worker"),
    (p.UserMessage({"cmd": "notifyRequest", "n": [1, 2]}), "master"), (p.BootError("boom"), "worker"),
])
def test_every_message_round_trips(msg, sender):
    assert p.decode(p.encode(msg), msg.nfds(), sender) == msg


def test_shared_reply_carries_one_fd_and_rr_reply_none():
    assert p.ServerReply("k", "shared").nfds() == 1
    assert p.ServerReply("k", "rr").nfds() == 0


@pytest.mark.parametrize("record, nfds, sender, why", [
    (b"", 0, "worker", "empty"),
    (b"\x63[]", 0, "worker", "unknown message type"),
    (b"\x05[\"http\",[1]]", 1, "worker", "may not come from the worker"),
    (b"\x06[[1],true]", 1, "worker", "carries 0 fds"),
    (b"\x05[\"http\",[1,2]]", 1, "master", "carries 2 fds, got 1"),
    (b"\x06[[1]]", 0, "worker", "expected 2 fields"),
    (b"\x06[1,true]", 0, "worker", "bad value"),
    (b"\x06[[\"1\"],true]", 0, "worker", "bad seq"),
    (b"\x06[[1],1]", 0, "worker", "bad value"),
    (b"\x06[[-1],true]", 0, "worker", "bad seq"),
    (b"\x06[[],true]", 0, "worker", "0 seqs"),
    (b"\x06[[1,2,3,4,5,6,7,8,9],true]", 0, "worker", "9 seqs"),
    (b"\x09[-1,0]", 0, "worker", "out of range"),
    (b"\x06{not json", 0, "worker", "not JSON"),
    (b"\x06" + b"[" * 100000, 0, "worker", "exceeds"),
])
def test_malformed_records_raise_protocol_error(record, nfds, sender, why):
    with pytest.raises(p.ProtocolError, match=why):
        p.decode(record, nfds, sender)


def test_oversized_user_message_is_refused_by_the_encoder():
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.encode(p.UserMessage("x" * p.MAX_RECORD))


def test_unserialisable_payload_is_a_protocol_error():
    with pytest.raises(p.ProtocolError, match="not JSON"):
        p.encode(p.UserMessage(object()))


def test_worker_reaches_listening_only_when_every_key_listens():
    peer = s.WorkerPeer(1, ("a", "b"))
    assert peer.receive(p.Online(1, 10)) is s.WorkerState.ONLINE
    for key in ("a", "b"):
        peer.receive(p.QueryServer(key))
    assert peer.receive(p.Listening("a")) is s.WorkerState.ONLINE
    assert peer.receive(p.Listening("b")) is s.WorkerState.LISTENING
    assert peer.event("disconnect") is s.WorkerState.DISCONNECTING
    assert peer.receive(p.Close("a")) is s.WorkerState.DISCONNECTING
    assert peer.event("exit") is s.WorkerState.DEAD


@pytest.mark.parametrize("messages, why", [
    ([p.Listening("a")], "not allowed in state none"),
    ([p.Online(2, 10)], "says it is worker 2"),
    ([p.Online(1, 10), p.QueryServer("zzz")], "unknown server key"),
    ([p.Online(1, 10), p.Listening("a")], "before QueryServer"),
    ([p.Online(1, 10), p.Ack((1,), True)], "not allowed in state online"),
    ([p.Online(1, 10), p.Online(1, 10)], "not allowed"),
])
def test_out_of_order_messages_are_the_workers_error(messages, why):
    peer = s.WorkerPeer(1, ("a",))
    with pytest.raises(p.ProtocolError, match=why):
        for msg in messages:
            peer.receive(msg)


def test_a_listening_that_races_our_disconnect_is_tolerated():
    peer = s.WorkerPeer(1, ("a",))
    peer.receive(p.Online(1, 10))
    peer.receive(p.QueryServer("a"))
    peer.event("disconnect")
    assert peer.receive(p.Listening("a")) is s.WorkerState.DISCONNECTING
