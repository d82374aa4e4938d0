"""The cluster protocol between master and workers: messages and codec.

Sans-I/O (like h11): bytes and a count of passed fds in, messages out, and back.
No sockets, no ``os``, no clocks here; ``channel.py`` moves the records.

A record is one SOCK_SEQPACKET datagram: one type byte, then the message's
fields as a JSON array in declaration order.  Fds travel in the same
``sendmsg`` (SCM_RIGHTS); how many a record must carry is part of its type.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

MAX_RECORD = 64 * 1024  # bytes in one record, payload included
MAX_FDS = 8  # fds the receiver makes room for in one record


class ProtocolError(Exception):
    """A record or a message that breaks the protocol; the sender is at fault."""


# ---------------------------------------------------------------- messages
@dataclass(frozen=True, slots=True)
class Message:
    code: ClassVar[int] = 0
    sender: ClassVar[str] = ""  # "worker", "master" or "both"

    def nfds(self) -> int:
        """How many fds travel with this message."""
        return 0


@dataclass(frozen=True, slots=True)
class Online(Message):
    code: ClassVar[int] = 1
    sender: ClassVar[str] = "worker"
    worker_id: int
    pid: int


@dataclass(frozen=True, slots=True)
class QueryServer(Message):
    code: ClassVar[int] = 2
    sender: ClassVar[str] = "worker"
    key: str


@dataclass(frozen=True, slots=True)
class ServerReply(Message):
    """Answer to QueryServer. ``mode``: rr | shared | reuseport | error."""

    code: ClassVar[int] = 3
    sender: ClassVar[str] = "master"
    key: str
    mode: str
    address: str = ""
    error: str = ""

    def nfds(self) -> int:
        return 1 if self.mode == "shared" else 0


@dataclass(frozen=True, slots=True)
class Listening(Message):
    code: ClassVar[int] = 4
    sender: ClassVar[str] = "worker"
    key: str


@dataclass(frozen=True, slots=True)
class NewConn(Message):
    """Connections for ``key``, one fd per seq (several when a backlog builds up)."""

    code: ClassVar[int] = 5
    sender: ClassVar[str] = "master"
    key: str
    seqs: tuple[int, ...]

    def nfds(self) -> int:
        return len(self.seqs)


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """The worker took (or refused) the connections ``seqs``."""

    code: ClassVar[int] = 6
    sender: ClassVar[str] = "worker"
    seqs: tuple[int, ...]
    accepted: bool


@dataclass(frozen=True, slots=True)
class Close(Message):
    code: ClassVar[int] = 7
    sender: ClassVar[str] = "worker"
    key: str


@dataclass(frozen=True, slots=True)
class Disconnect(Message):
    code: ClassVar[int] = 8
    sender: ClassVar[str] = "master"


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Every heartbeat_interval: open connections, requests served, and ``paused``: the
    worker takes no new connections for lack of fds (its RLIMIT_NOFILE; worker/fdpressure.py).
    A record without ``paused`` (an older worker) decodes as False."""

    code: ClassVar[int] = 9
    sender: ClassVar[str] = "worker"
    open: int
    served: int
    paused: bool = False


@dataclass(frozen=True, slots=True)
class UserMessage(Message):
    """``worker.send`` / ``process.send``: any JSON value."""

    code: ClassVar[int] = 10
    sender: ClassVar[str] = "both"
    payload: Any


@dataclass(frozen=True, slots=True)
class BootError(Message):
    """The worker cannot load the application; it exits next (code 6).

    The master prints ``reason`` once, instead of every worker printing it.
    """

    code: ClassVar[int] = 11
    sender: ClassVar[str] = "worker"
    reason: str


@dataclass(frozen=True, slots=True)
class Recycle(Message):
    """The worker asks to be replaced (``reason``: max_requests | request_timeout); it keeps
    serving until the master disconnects it, once its successor listens (recycling.py)."""

    code: ClassVar[int] = 12
    sender: ClassVar[str] = "worker"
    reason: str


@dataclass(frozen=True, slots=True)
class Leaving(Message):
    """A library worker disconnects itself (Node's ``cluster.worker.disconnect()`` in a worker):
    the primary's ``worker.exited_after_disconnect`` becomes true (Node's ``exitedAfterDisconnect``
    message).  The service's workers never send it."""

    code: ClassVar[int] = 13
    sender: ClassVar[str] = "worker"


MESSAGES: dict[int, type[Message]] = {
    m.code: m
    for m in (Online, QueryServer, ServerReply, Listening, NewConn, Ack,
              Close, Disconnect, Heartbeat, UserMessage, BootError, Recycle, Leaving)
}
_KINDS = {"int": (int,), "bool": (bool,), "str": (str,), "tuple[int, ...]": (list,)}


def _schema(cls: type[Message]) -> tuple[tuple[str, ...], int, tuple[tuple[str, tuple | None], ...]]:
    """(field names, how many are required, (name, accepted types) per field); computed once."""
    specs = fields(cls)
    required = sum(1 for f in specs if f.default is MISSING)
    return tuple(f.name for f in specs), required, tuple((f.name, _KINDS.get(f.type)) for f in specs)


_SCHEMAS = {cls: _schema(cls) for cls in MESSAGES.values()}
_json_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # built once: hot path
_raw_decode = json.JSONDecoder().raw_decode  # (value, end); no bytes sniffing, no whitespace pass
_SEQ_END = 2**63
_NEWCONN = bytes((NewConn.code,))


# ---------------------------------------------------------------- codec
def encode(msg: Message) -> bytes:
    """One record for ``msg``; raises ProtocolError if it would be too large."""
    if type(msg) is Ack and 0 < len(msg.seqs) <= MAX_FDS and all(type(s) is int for s in msg.seqs):
        return _encode_ack(msg)
    return _encode(msg)


def _encode(msg: Message) -> bytes:
    try:
        body = _json_encode([getattr(msg, name) for name in _SCHEMAS[type(msg)][0]])
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{type(msg).__name__} is not JSON-serialisable: {exc}") from None
    record = bytes((msg.code,)) + body.encode()
    if len(record) > MAX_RECORD:
        raise ProtocolError(f"{type(msg).__name__} record of {len(record)} bytes exceeds {MAX_RECORD}")
    return record


def _encode_ack(msg: Ack) -> bytes:
    """The record ``encode`` makes for an Ack (the worker's hot path), built without json:
    ``\\x06[[1,2],true]``; seqs are ints (from a NewConn)."""
    return b"\x06[[%s],%s]" % (",".join(map(int.__repr__, msg.seqs)).encode(),
                               b"true" if msg.accepted else b"false")


def _decode_newconn(record: bytes, nfds: int, fds_lost: bool) -> NewConn | None:
    """A well-formed NewConn (the worker's hot path), or None: ``decode``'s checks then say
    what is wrong.  Same result as the generic path for every record it accepts."""
    try:
        text = record[1:].decode()
        values, end = _raw_decode(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        return None
    if end != len(text) or type(values) is not list or len(values) != 2:
        return None
    key, seqs = values
    if type(key) is not str or type(seqs) is not list or not 1 <= len(seqs) <= MAX_FDS:
        return None
    for seq in seqs:
        if type(seq) is not int or not 0 <= seq < _SEQ_END:
            return None
    if len(seqs) != nfds and not (fds_lost and len(seqs) > nfds):
        return None
    return NewConn(key, tuple(seqs))


def decode(record: bytes, nfds: int, sender: str, fds_lost: bool = False) -> Message:
    """The message in ``record`` that came with ``nfds`` fds from ``sender``.

    ``fds_lost``: the kernel dropped fds the record carried (MSG_CTRUNC: the receiver's
    fd table is full), so fewer than the message's count may have come.
    Any defect raises ProtocolError; nothing else escapes.
    """
    if record[:1] == _NEWCONN and sender == "master" and len(record) <= MAX_RECORD:
        fast = _decode_newconn(record, nfds, fds_lost)
        if fast is not None:
            return fast
    return _decode(record, nfds, sender, fds_lost)


def _decode(record: bytes, nfds: int, sender: str, fds_lost: bool) -> Message:
    if not record:
        raise ProtocolError("empty record")
    if len(record) > MAX_RECORD:
        raise ProtocolError(f"record of {len(record)} bytes exceeds {MAX_RECORD}")
    cls = MESSAGES.get(record[0])
    if cls is None:
        raise ProtocolError(f"unknown message type {record[0]}")
    if cls.sender not in (sender, "both"):
        raise ProtocolError(f"{cls.__name__} may not come from the {sender}")
    try:
        values = json.loads(record[1:])
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"{cls.__name__}: body is not JSON: {exc}") from None
    msg = _build(cls, values)
    if msg.nfds() != nfds and not (fds_lost and msg.nfds() > nfds):
        raise ProtocolError(f"{cls.__name__} carries {msg.nfds()} fds, got {nfds}")
    return msg


def _build(cls: type[Message], values: Any) -> Message:
    names, required, checks = _SCHEMAS[cls]
    if type(values) is not list or not required <= len(values) <= len(names):
        raise ProtocolError(f"{cls.__name__}: expected {len(names)} fields, got {values!r:.80}")
    pairs = zip(checks, values, strict=False)
    return cls(*[_field(cls, name, kinds, value) for (name, kinds), value in pairs])


def _field(cls: type[Message], name: str, kinds: tuple | None, value: Any) -> Any:
    """``value`` checked against the field's type (None: a user payload, any JSON)."""
    if kinds is None:
        return value
    if not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool)):
        raise ProtocolError(f"{cls.__name__}.{name}: bad value {value!r:.80}")
    if kinds == (int,) and not 0 <= value < 2**63:
        raise ProtocolError(f"{cls.__name__}.{name}: out of range {value}")
    if kinds == (list,):  # seqs: JSON has no tuples
        _check_seqs(cls, name, value)
        return tuple(value)
    return value


def _check_seqs(cls: type[Message], name: str, seqs: list[Any]) -> None:
    if not 1 <= len(seqs) <= MAX_FDS:
        raise ProtocolError(f"{cls.__name__}.{name}: {len(seqs)} seqs, expected 1 to {MAX_FDS}")
    for seq in seqs:
        if type(seq) is not int or not 0 <= seq < 2**63:
            raise ProtocolError(f"{cls.__name__}.{name}: bad seq {seq!r:.40}")
