"""Node's ``handles`` map for the library primary (``sockserve.cluster``), pure.

A worker's ``listen()`` sends ``QueryServer(key)``; the key names what it listens on (Node
keys its map by ``address:port:addressType:fd:index``): ``HOST:PORT``, ``[V6]:PORT``,
``unix:/PATH``, a systemd socket name (``LISTEN_FDNAMES``), or ``NAME=ADDRESS`` (that
name when systemd passed it, else ADDRESS bound by the primary; the CLI's ``--bind
NAME=ADDR`` spelling), with ``#N`` when one worker asks for the same address again
(``indexed``).  The first worker asking for a key makes the primary open the handle; the
same key from other workers shares it; the last ``Close`` (or death) of its users releases it
(Node's ``RoundRobinHandle.remove`` / ``SharedHandle.remove`` returning true).
No sockets here: ``master/primary_pool.py`` opens and closes them.

``OpenPeer`` is ``peer.WorkerPeer`` for library workers, whose keys are not known at
spawn: any key may be asked, at any time while the worker serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .peer import WorkerPeer, WorkerState, next_state
from .protocol import Close, Leaving, Listening, Message, Online, ProtocolError, QueryServer


def server_key(port: int | None = None, host: str | None = None, *, name: str | None = None,
               path: str | None = None) -> str:
    """The QueryServer key of ``listen(port, host)``, ``listen(path=)`` or ``listen(name=)``.

    ``host`` None is every IPv4 address (``0.0.0.0``, Node's unspecified address when
    IPv6 is off); an IPv6 host is bracketed.  Raises ValueError for a bad combination.
    """
    if path is not None and port is not None:
        raise ValueError("listen(): give a port or a path, not both")
    address = ""
    if path is not None:
        address = f"unix:{path}"
    elif port is not None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"listen(): port must be an int from 0 to 65535, got {port!r}")
        host = host or "0.0.0.0"
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if name is not None:
        if not name or any(c in name for c in ":=") or name == "unknown":
            raise ValueError(f"listen(): bad socket name {name!r}")
        return f"{name}={address}" if address else name
    if not address:
        raise ValueError("listen(): give a port, a path or a name")
    return address


def indexed(key: str, taken: object) -> str:
    """``key``, or ``key#N`` with the first N not ``in taken``: the same address asked twice by
    one worker is two servers (Node's ``index``; ``listen(0)`` twice is two random ports)."""
    n, candidate = 0, key
    while candidate in taken:  # type: ignore[operator]
        n += 1
        candidate = f"{key}#{n}"
    return candidate


def parse_key(key: str) -> tuple[str | None, str | None]:
    """(name, address) of a key: either may be None, not both (a ``#N`` index is dropped)."""
    head, sep, index = key.rpartition("#")
    if sep and index.isdigit():
        key = head
    if key.startswith("unix:") or key.startswith("["):
        return None, key
    name, sep, address = key.partition("=")
    if sep:
        return name, address or None
    if ":" in key:
        return None, key
    return key, None


def address_info(address: str, name: str | None = None) -> dict[str, object]:
    """Node's ``listening`` address object for a printable address: ``address``, ``port``,
    ``address_type`` (4, 6 or -1 for unix), and ``name`` (systemd's, or None)."""
    if address.startswith("unix:"):
        return {"address": address[5:], "port": -1, "address_type": -1, "name": name}
    host, _, port = address.rpartition(":")
    six = host.startswith("[")
    return {"address": host.strip("[]"), "port": int(port), "address_type": 6 if six else 4,
            "name": name}


@dataclass
class Handle:
    key: str
    mode: str  # rr or shared, fixed at creation (Node: the scheduling policy)
    users: set[int] = field(default_factory=set)  # workers that asked and did not close


class Handles:
    """key -> Handle; who listens on what, and when a handle is free."""

    def __init__(self) -> None:
        self.map: dict[str, Handle] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.map

    def add(self, key: str, mode: str, worker_id: int) -> tuple[Handle, bool]:
        """``worker_id`` asks for ``key``: (its handle, True if it must be opened now)."""
        handle = self.map.get(key)
        new = handle is None
        if handle is None:
            handle = self.map[key] = Handle(key, mode)
        handle.users.add(worker_id)
        return handle, new

    def forget(self, key: str) -> None:
        """Opening the handle failed: the next query tries again (Node deletes it too)."""
        self.map.pop(key, None)

    def remove(self, key: str, worker_id: int) -> Handle | None:
        """``worker_id`` closed ``key``; the handle when it has no user left (release it)."""
        handle = self.map.get(key)
        if handle is None:
            return None
        handle.users.discard(worker_id)
        if handle.users:
            return None
        del self.map[key]
        return handle

    def remove_worker(self, worker_id: int) -> list[Handle]:
        """``worker_id`` is gone: the handles it was the last user of."""
        return [h for key in list(self.map) if (h := self.remove_if_user(key, worker_id))]

    def remove_if_user(self, key: str, worker_id: int) -> Handle | None:
        return self.remove(key, worker_id) if worker_id in self.map[key].users else None

    def rr_keys(self, listening: set[str]) -> set[str]:
        """The rr handles among ``listening`` (a worker's keys): the rotations it joins, one per
        handle, as Node keeps one ``RoundRobinHandle`` per key (master/round_robin.py)."""
        return {key for key in listening if (h := self.map.get(key)) is not None and h.mode == "rr"}


class OpenPeer(WorkerPeer):
    """A library worker's protocol state: keys come with its QueryServers, at any time.

    LISTENING once every key it asked for listens (at least one); a new QueryServer while
    listening goes back to ONLINE until that key listens too.
    """

    reopens = True  # a closed key may be asked for again (listen() after server.close())

    def __init__(self, worker_id: int) -> None:
        super().__init__(worker_id, ())

    def receive(self, msg: Message) -> WorkerState:
        if isinstance(msg, QueryServer) and self.state is WorkerState.LISTENING:
            self.state = WorkerState.ONLINE
        if isinstance(msg, (QueryServer, Listening, Close)) and self.state is not WorkerState.NONE:
            self._track(msg)
            return self.state
        if isinstance(msg, Leaving) and self.state in (WorkerState.ONLINE, WorkerState.LISTENING,
                                                       WorkerState.DISCONNECTING):
            return self.state  # its own disconnect: the state follows its Close messages, its exit
        self.state = next_state(self.state, type(msg).__name__)  # not WorkerPeer's: no keys yet
        if isinstance(msg, Online) and msg.worker_id != self.worker_id:
            raise ProtocolError(f"worker {self.worker_id} says it is worker {msg.worker_id}")
        return self.state

    def _track(self, msg: QueryServer | Listening | Close) -> None:
        if self.state is WorkerState.DEAD:
            raise ProtocolError(f"{type(msg).__name__} from a dead worker")
        super()._track(msg)  # the one bookkeeping (peer.py), with reopens
        self.keys = tuple(sorted(self.queried))
        if self.state is WorkerState.ONLINE and self.queried and self.listening == self.queried:
            self.state = WorkerState.LISTENING
