"""The worker's codec fast paths (NewConn decode, Ack encode) agree with the generic codec.

``protocol.decode`` reads a well-formed NewConn without the generic schema walk, and
``protocol.encode`` writes an Ack without json; for every input, the result must be the one
the generic path (``_decode`` / ``_encode``) gives: the same message, or a ProtocolError.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sockserve.cluster import protocol
from sockserve.cluster.protocol import ProtocolError

SEQ_EDGES = st.sampled_from([0, 1, 2**63 - 1, 2**63, -1, True, False, 1.0, "1", None, [1]])
SEQS = st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=protocol.MAX_FDS) | st.lists(
    st.integers(0, 2**63 - 1) | SEQ_EDGES, min_size=0, max_size=protocol.MAX_FDS + 2)
KEYS = st.text(max_size=12) | st.sampled_from(["http", "tcp:127.0.0.1:80", "é\"\\\n", 7, None])


def _body(key, seqs, extra: list, space: str, delta: int) -> tuple[bytes, int]:
    """(record, fds that came with it): mostly one per seq, sometimes one more or fewer."""
    text = json.dumps([key, seqs, *extra], separators=(",", ":"))
    return bytes((protocol.NewConn.code,)) + (space + text + space).encode(), max(0, len(seqs) + delta)


EXTRA = st.sampled_from([[], [], [3]])  # a third field: not a NewConn
NEWCONN_RECORDS = st.builds(_body, KEYS, SEQS, EXTRA,
                            st.sampled_from(["", "", " ", "\n"]), st.sampled_from([0, 0, 0, -1, 1]))
RECORDS = NEWCONN_RECORDS | NEWCONN_RECORDS.map(lambda r: (r[0][:-1], r[1])) | st.tuples(
    st.binary(max_size=40).map(lambda b: bytes((protocol.NewConn.code,)) + b), st.integers(0, 9))


def _outcome(decode, record: bytes, nfds: int, sender: str, lost: bool):
    try:
        return decode(record, nfds, sender, lost)
    except ProtocolError:
        return "ProtocolError"


@settings(max_examples=500, deadline=None)
@given(record_fds=RECORDS, lost=st.booleans(), sender=st.sampled_from(["master", "master", "worker"]))
def test_newconn_decode_matches_the_generic_path(record_fds, lost, sender):
    record, nfds = record_fds
    assert _outcome(protocol.decode, record, nfds, sender, lost) == \
        _outcome(protocol._decode, record, nfds, sender, lost)


def test_a_well_formed_newconn_takes_the_fast_path():
    record = protocol._encode(protocol.NewConn("tcp:[::1]:8080", (1, 2**63 - 1)))
    assert protocol._decode_newconn(record, 2, False) == protocol.NewConn("tcp:[::1]:8080", (1, 2**63 - 1))
    assert protocol._decode_newconn(record, 1, False) is None  # one fd missing: the generic error
    assert protocol._decode_newconn(record, 1, True) == protocol.NewConn("tcp:[::1]:8080", (1, 2**63 - 1))


@settings(max_examples=300, deadline=None)
@given(seqs=st.lists(st.integers(0, 2**63 - 1) | st.booleans(), min_size=0,
                     max_size=protocol.MAX_FDS + 2), accepted=st.booleans())
def test_ack_encode_matches_the_generic_path(seqs, accepted):
    msg = protocol.Ack(tuple(seqs), accepted)
    try:
        expected = protocol._encode(msg)
    except ProtocolError:
        expected = "ProtocolError"
    try:
        got = protocol.encode(msg)
    except ProtocolError:
        got = "ProtocolError"
    assert got == expected
    if 1 <= len(seqs) <= protocol.MAX_FDS and not any(type(s) is bool for s in seqs):
        assert protocol.decode(got, 0, "worker") == msg  # the master reads it back
