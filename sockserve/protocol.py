"""The cluster protocol between master and workers: messages, codec, state table.

Sans-I/O (like h11): bytes and a count of passed fds in, messages out, and back.
No sockets, no ``os``, no clocks here; ``channel.py`` moves the records.

A record is one SOCK_SEQPACKET datagram: one type byte, then the message's
fields as a JSON array in declaration order.  Fds travel in the same
``sendmsg`` (SCM_RIGHTS); how many a record must carry is part of its type.
"""

from __future__ import annotations

import enum
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
    code: ClassVar[int] = 5
    sender: ClassVar[str] = "master"
    key: str
    seq: int

    def nfds(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class Ack(Message):
    code: ClassVar[int] = 6
    sender: ClassVar[str] = "worker"
    seq: int
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
    code: ClassVar[int] = 9
    sender: ClassVar[str] = "worker"
    open: int
    served: int


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


MESSAGES: dict[int, type[Message]] = {
    m.code: m
    for m in (Online, QueryServer, ServerReply, Listening, NewConn, Ack,
              Close, Disconnect, Heartbeat, UserMessage, BootError)
}
_KINDS = {"int": (int,), "bool": (bool,), "str": (str,)}


def _schema(cls: type[Message]) -> tuple[tuple[str, ...], int, tuple[tuple[str, tuple | None], ...]]:
    """(field names, how many are required, (name, accepted types) per field); computed once."""
    specs = fields(cls)
    required = sum(1 for f in specs if f.default is MISSING)
    return tuple(f.name for f in specs), required, tuple((f.name, _KINDS.get(f.type)) for f in specs)


_SCHEMAS = {cls: _schema(cls) for cls in MESSAGES.values()}
_json_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode  # built once: hot path


# ---------------------------------------------------------------- codec
def encode(msg: Message) -> bytes:
    """One record for ``msg``; raises ProtocolError if it would be too large."""
    try:
        body = _json_encode([getattr(msg, name) for name in _SCHEMAS[type(msg)][0]])
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{type(msg).__name__} is not JSON-serialisable: {exc}") from None
    record = bytes((msg.code,)) + body.encode()
    if len(record) > MAX_RECORD:
        raise ProtocolError(f"{type(msg).__name__} record of {len(record)} bytes exceeds {MAX_RECORD}")
    return record


def decode(record: bytes, nfds: int, sender: str) -> Message:
    """The message in ``record`` that came with ``nfds`` fds from ``sender``.

    Any defect raises ProtocolError; nothing else escapes.
    """
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
    if msg.nfds() != nfds:
        raise ProtocolError(f"{cls.__name__} carries {msg.nfds()} fds, got {nfds}")
    return msg


def _build(cls: type[Message], values: Any) -> Message:
    names, required, checks = _SCHEMAS[cls]
    if type(values) is not list or not required <= len(values) <= len(names):
        raise ProtocolError(f"{cls.__name__}: expected {len(names)} fields, got {values!r:.80}")
    for (name, kinds), value in zip(checks, values, strict=False):
        if kinds is None:
            continue  # Any: a user payload
        if not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool)):
            raise ProtocolError(f"{cls.__name__}.{name}: bad value {value!r:.80}")
        if kinds == (int,) and not 0 <= value < 2**63:
            raise ProtocolError(f"{cls.__name__}.{name}: out of range {value}")
    return cls(*values)


# ---------------------------------------------------------------- worker states
class WorkerState(enum.Enum):
    NONE = "none"  # spawned, not yet online
    ONLINE = "online"  # said online, asking for servers
    LISTENING = "listening"  # listening on every key
    DISCONNECTING = "disconnecting"  # asked to stop taking connections
    DEAD = "dead"  # exited


S = WorkerState
# (state, event) -> next state.  Events: the message types a worker sends,
# plus "disconnect" (master asks) and "exit" (process gone).
TRANSITIONS: dict[tuple[WorkerState, str], WorkerState] = {
    (S.NONE, "Online"): S.ONLINE,
    (S.NONE, "BootError"): S.NONE,
    (S.ONLINE, "BootError"): S.ONLINE,  # lifespan startup failed
    (S.DISCONNECTING, "Online"): S.DISCONNECTING,  # we asked it to leave while it booted
    (S.DISCONNECTING, "BootError"): S.DISCONNECTING,
    (S.ONLINE, "QueryServer"): S.ONLINE,
    (S.ONLINE, "Listening"): S.ONLINE,  # LISTENING once every key is: see WorkerPeer
    (S.ONLINE, "Heartbeat"): S.ONLINE,
    (S.ONLINE, "UserMessage"): S.ONLINE,
    (S.LISTENING, "Ack"): S.LISTENING,
    (S.LISTENING, "Close"): S.LISTENING,
    (S.LISTENING, "Heartbeat"): S.LISTENING,
    (S.LISTENING, "UserMessage"): S.LISTENING,
    (S.DISCONNECTING, "Listening"): S.DISCONNECTING,  # raced with our disconnect
    (S.DISCONNECTING, "QueryServer"): S.DISCONNECTING,
    (S.DISCONNECTING, "Ack"): S.DISCONNECTING,
    (S.DISCONNECTING, "Close"): S.DISCONNECTING,
    (S.DISCONNECTING, "Heartbeat"): S.DISCONNECTING,
    (S.DISCONNECTING, "UserMessage"): S.DISCONNECTING,
    (S.NONE, "disconnect"): S.DISCONNECTING,
    (S.ONLINE, "disconnect"): S.DISCONNECTING,
    (S.LISTENING, "disconnect"): S.DISCONNECTING,
    (S.DISCONNECTING, "disconnect"): S.DISCONNECTING,
    **{(s, "exit"): S.DEAD for s in WorkerState},
}


def next_state(state: WorkerState, event: str) -> WorkerState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ProtocolError(f"{event} is not allowed in state {state.value}") from None


class WorkerPeer:
    """The master's view of one worker's protocol state.

    ``receive(msg)`` validates a worker's message against the state table and
    the keys it may ask for, and returns the new state.
    """

    def __init__(self, worker_id: int, keys: tuple[str, ...]) -> None:
        self.worker_id = worker_id
        self.keys = keys
        self.state = WorkerState.NONE
        self.queried: set[str] = set()
        self.listening: set[str] = set()
        self.closed: set[str] = set()

    def receive(self, msg: Message) -> WorkerState:
        self.state = next_state(self.state, type(msg).__name__)
        if isinstance(msg, Online) and msg.worker_id != self.worker_id:
            raise ProtocolError(f"worker {self.worker_id} says it is worker {msg.worker_id}")
        if isinstance(msg, (QueryServer, Listening, Close)):
            self._check_key(msg)
        if self.state is WorkerState.ONLINE and self.listening == set(self.keys):
            self.state = WorkerState.LISTENING
        return self.state

    def _check_key(self, msg: QueryServer | Listening | Close) -> None:
        if msg.key not in self.keys:
            raise ProtocolError(f"unknown server key {msg.key!r}")
        if isinstance(msg, QueryServer):
            self.queried.add(msg.key)
        elif msg.key not in self.queried:
            raise ProtocolError(f"{type(msg).__name__} for {msg.key!r} before QueryServer")
        elif isinstance(msg, Listening):
            self.listening.add(msg.key)
        else:
            self.closed.add(msg.key)

    def event(self, name: str) -> WorkerState:
        """A master-side event: ``disconnect`` or ``exit``."""
        self.state = next_state(self.state, name)
        return self.state
