"""The worker state table and the master's view of one worker's protocol state, pure.

none → online → listening → disconnecting → dead: a table, not scattered ifs.
Any message a worker sends out of turn is a ProtocolError (that worker's fault).
"""

from __future__ import annotations

import enum

from .protocol import Close, Listening, Message, Online, ProtocolError, QueryServer


class WorkerState(enum.Enum):
    NONE = "none"  # spawned, not yet online
    ONLINE = "online"  # said online, asking for servers
    LISTENING = "listening"  # listening on every key
    DISCONNECTING = "disconnecting"  # asked to stop taking connections
    DEAD = "dead"  # exited


S = WorkerState
# Messages a worker may send in a state without changing it ("disconnect" is the master's).
STAY: dict[WorkerState, tuple[str, ...]] = {
    S.NONE: ("BootError",),
    # LISTENING once every key listens: see WorkerPeer; BootError = lifespan startup failed
    S.ONLINE: ("QueryServer", "Listening", "Heartbeat", "UserMessage", "BootError"),
    S.LISTENING: ("Ack", "Close", "Heartbeat", "UserMessage", "Recycle"),
    # anything still under way when we asked it to leave (it may even be booting)
    S.DISCONNECTING: ("Online", "BootError", "QueryServer", "Listening", "Ack", "Close",
                      "Heartbeat", "UserMessage", "Recycle", "disconnect"),
}
# (state, event) -> next state.  Events: the message types a worker sends,
# plus "disconnect" (master asks) and "exit" (process gone).
TRANSITIONS: dict[tuple[WorkerState, str], WorkerState] = {
    **{(state, event): state for state, events in STAY.items() for event in events},
    (S.NONE, "Online"): S.ONLINE,
    **{(state, "disconnect"): S.DISCONNECTING for state in (S.NONE, S.ONLINE, S.LISTENING)},
    **{(state, "exit"): S.DEAD for state in WorkerState},
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

    reopens = False  # the service's keys are fixed at spawn: a Close is for good (a drain)

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
        self._track(msg)

    def _track(self, msg: QueryServer | Listening | Close) -> None:
        """The bookkeeping of ``msg.key`` for both peers (this one, handles.OpenPeer): a
        QueryServer queries it, Listening needs a QueryServer before, Close closes it; with
        ``reopens`` a Close also ends its query and listening (it may be asked again)."""
        key = msg.key
        if isinstance(msg, QueryServer):
            self.queried.add(key)
            if self.reopens:
                self.listening.discard(key)
                self.closed.discard(key)
        elif key not in self.queried:
            raise ProtocolError(f"{type(msg).__name__} for {key!r} before QueryServer")
        elif isinstance(msg, Listening):
            self.listening.add(key)
        else:
            self.closed.add(key)
            if self.reopens:
                self.listening.discard(key)
                self.queried.discard(key)

    def event(self, name: str) -> WorkerState:
        """A master-side event: ``disconnect`` or ``exit``."""
        self.state = next_state(self.state, name)
        return self.state
