"""The library primary's pool and dispatcher: the service's Pool and Dispatcher, with
listeners opened on demand (Node's ``queryServer``) instead of all at start.

``PrimaryDispatcher`` keeps Node's handles map (cluster/handles.py): the first QueryServer
for a key opens it (an inherited systemd socket with that LISTEN_FDNAMES name or address,
else bound here), the same key from other workers shares it, the last Close or death of its
users releases it.  The hand-off is the service's: one policy (the C rr engine when built, on
the C path throughout, releases included), NewConn/Ack, the shared listening socket; under rr
a worker is in the rotation of each handle it listens on (one rotation per key, as Node's
``RoundRobinHandle``: master/round_robin.py), so workers listening on different addresses
each serve their own.  ``LibraryPool`` spawns the program itself
(``[python, exec, *args]``, Node's ``child_process.fork``) and never respawns.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import Any

from ..cluster import protocol
from ..cluster.channel import Channel, socketpair
from ..cluster.handles import Handle, Handles, OpenPeer, parse_key
from ..cluster.peer import WorkerState
from ..cluster.protocol import Message, ServerReply
from ..config import ConfigError, make_config, parse_address
from ..listeners import Listener, bind_all, remove_socket_files
from ..systemd.listenfds import InheritedSocket
from . import native, process
from .handoff import Dispatcher
from .pool import Pool
from .workers import WorkerHandle

BACKLOG = 511  # Node's default backlog
DEFAULTS = make_config({})


class PrimaryDispatcher(Dispatcher):
    """A Dispatcher whose listeners come and go with the workers' queries."""

    def __init__(self, loop: Any, policy: str, inherited: list[InheritedSocket],
                 workers: dict[int, WorkerHandle]) -> None:
        super().__init__(loop, [], policy, DEFAULTS.rr_window, workers)
        self.handles = Handles()
        self.inherited = {s.fd: s for s in inherited if s.listening}
        self._used: dict[int, str] = {}  # inherited fd -> the key using it
        self._joined: dict[int, set[str]] = {}  # worker -> the rr keys whose rotation it is in
        self.start_accepting()

    # ------------------------------------------------------------ queryServer
    def query(self, worker: WorkerHandle, key: str) -> tuple[ServerReply, list[int]]:
        """The ServerReply for ``worker``'s QueryServer(key), opening the handle if new."""
        handle, new = self.handles.add(key, self.policy.mode, worker.id)
        if new:
            try:
                self._open(key)
            except (OSError, ConfigError, LookupError) as exc:
                self.handles.forget(key)
                why = str(exc).strip("'\"")  # the worker says "listen KEY: why": no second address
                why = why.split(": ", 1)[-1] if why.startswith("bind ") else why
                return ServerReply(key, "error", error=why), []
        listener = self.listeners[key]
        fds = [listener.sock.fileno()] if handle.mode == "shared" else []
        return ServerReply(key, handle.mode, listener.address), fds

    def _open(self, key: str) -> None:
        name, address = parse_key(key)
        found = self._inherited(name, address)
        if found is not None:
            self._used[found.fd] = key
            listener = Listener(key=key, address=found.address, sock=found.sock, inherited=True)
        elif address is None:
            raise LookupError(f"no socket named {name!r} was passed (LISTEN_FDNAMES)")
        else:
            (listener,) = bind_all((parse_address(address),), BACKLOG, False)
            listener.key = key
        listener.sock.setblocking(False)
        self.listeners[key] = listener
        if self.native:  # the engine learns the key and polls the socket with the others
            index = self.policy.key(key, native.newconn_prefix(key))
            self._key_index[key] = index
            self._listen_fd = self.policy.listen(listener.sock.fileno(), index)
            self._listen_engine = self.policy
            self._engine_fds.add(listener.sock.fileno())
        self._update_readers()

    def _inherited(self, name: str | None, address: str | None) -> InheritedSocket | None:
        for sock in self.inherited.values():
            if (name is not None and sock.name == name) or (name is None and sock.address == address):
                if sock.fd in self._used:
                    raise LookupError(f"the inherited socket {sock.name} ({sock.address}) already "
                                      f"serves {self._used[sock.fd]!r}")
                return sock
        return None

    # ------------------------------------------------------------ release
    def closed(self, worker: WorkerHandle, key: str) -> None:
        """``worker`` closed its server for ``key`` (Node's ``close`` message)."""
        handle = self.handles.remove(key, worker.id)
        self.refresh(worker)
        if handle is not None:
            self._release(handle)

    def worker_gone(self, worker: WorkerHandle) -> None:
        self._joined.pop(worker.id, None)
        super().worker_gone(worker)
        for handle in self.handles.remove_worker(worker.id):
            self._release(handle)

    def _release(self, handle: Handle) -> None:
        listener = self.listeners.pop(handle.key, None)
        if listener is None:
            return
        if handle.key in self._readers:
            self.loop.remove_reader(listener.sock.fileno())
            self._readers.discard(handle.key)
        fd = listener.sock.fileno()
        if fd in self._engine_fds:  # out of the C engine's epoll set, before the fd closes
            self._listen_engine.unlisten(fd)
            self._engine_fds.discard(fd)
        for joined in self._joined.values():  # its users are gone: nobody is in its rotation
            joined.discard(handle.key)
        self._apply(self.policy.forget(handle.key))  # what still waits for it is closed
        if listener.inherited:
            self._used = {fd: k for fd, k in self._used.items() if k != handle.key}
        else:
            listener.sock.close()
            remove_socket_files([listener])  # a unix socket file we made
        for worker in list(self.workers.values()):
            self.refresh(worker)
        self._update_readers()

    # ------------------------------------------------------------ rotation
    def rr_keys(self, worker: WorkerHandle) -> list[str]:
        """The rr handles ``worker`` listens on: it is in each one's rotation (Node's
        ``RoundRobinHandle.add``), while it takes connections at all."""
        return sorted(self.handles.rr_keys(worker.peer.listening))

    def refresh(self, worker: WorkerHandle) -> None:
        """rr: ``worker`` joins the rotation of each rr handle it listens on and leaves the
        others' (Close, a pause, a disconnect); connections of a key go to its rotation only."""
        taking = (worker.disconnect_at is None and worker.paused_since is None
                  and worker.peer.state in (WorkerState.ONLINE, WorkerState.LISTENING))
        want = set(self.rr_keys(worker)) if taking else set()
        have = self._joined.get(worker.id, set())
        if want and worker.id not in self._listening:
            self._joined[worker.id] = want
            self.worker_listening(worker)  # joins every key of rr_keys
            return
        actions = []
        for key in sorted(want - have):
            actions += self.policy.add(worker.id, key)
        for key in sorted(have - want):
            actions += self.policy.stop(worker.id, key)
        self._joined[worker.id] = want
        self._apply(actions)

    def heartbeat(self, worker: WorkerHandle, beat: Any, now: float, bound: float) -> bool:
        """The service's fd back-pressure (it stops and adds the worker itself), then the
        rotation made to agree with the handles again."""
        replace = super().heartbeat(worker, beat, now, bound)
        if worker.paused_since is not None:
            self._joined[worker.id] = set()  # stopped in every key's rotation
        else:
            self.refresh(worker)
        return replace


class LibraryPool(Pool):
    """Pool for ``cluster.fork()``: spawns the program, one OpenPeer per worker, no respawn."""

    dispatcher: PrimaryDispatcher

    def fork(self, worker_id: int, argv: list[str], env: Mapping[str, str], *,
             silent: bool = False) -> WorkerHandle:
        """Start worker ``worker_id`` running ``argv``; raises OSError (Node's fork throws too)."""
        master_end, worker_end = socketpair()
        try:
            spawned = process.spawn_worker({**self.env, **env, "SOCKSERVE_WORKER_ID": str(worker_id)},
                                           worker_end, tuple(argv), silent=silent)
        except OSError:
            master_end.close()
            raise
        finally:
            worker_end.close()
        now = self.loop.time()
        worker = WorkerHandle(id=worker_id, slot=worker_id, generation=1, pid=spawned.pid,
                              pidfd=spawned.pidfd, channel=None,  # type: ignore[arg-type]
                              peer=OpenPeer(worker_id), started=now, last_seen=now)
        worker.channel = self._channel(worker, master_end)
        self.workers[worker.id] = worker
        self.configs[worker.id] = DEFAULTS
        self.loop.add_reader(spawned.pidfd, self._reap, worker)
        return worker

    def _channel(self, worker: WorkerHandle, sock: socket.socket) -> Channel:
        channel = Channel(sock, "worker", lambda m, f: self._received(worker, m, f),
                          lambda reason: self._channel_closed(worker, reason),
                          lambda reason: self._fault(worker, reason))
        channel.start(self.loop)
        return channel

    def _dispatch(self, worker: WorkerHandle, msg: Message) -> None:
        if isinstance(msg, protocol.Listening):
            self.dispatcher.refresh(worker)
            self.emitter.emit("listening", worker, msg.key)
        elif isinstance(msg, protocol.Close):
            self.dispatcher.closed(worker, msg.key)
        elif isinstance(msg, protocol.Leaving):  # cluster.worker.disconnect() in the worker
            self.emitter.emit("leaving", worker)
        elif isinstance(msg, protocol.QueryServer):
            self.dispatcher.refresh(worker)  # out of rotation until the new key listens too
            reply, fds = self.dispatcher.query(worker, msg.key)
            worker.channel.send(reply, fds)
        else:
            super()._dispatch(worker, msg)

    def _state_changed(self, worker: WorkerHandle, state: WorkerState) -> None:
        if state is WorkerState.ONLINE and not worker.peer.queried:
            self.emitter.emit("online", worker)
        elif state is WorkerState.LISTENING:
            self.dispatcher.refresh(worker)

    def disconnect(self, worker_id: int) -> None:
        super().disconnect(worker_id)
        if worker := self.workers.get(worker_id):
            self.dispatcher.refresh(worker)


def no_feed(event: Any) -> None:
    """The supervisor's events: the library primary has no supervisor (Node respawns nothing)."""


def new_pool(loop: Any, policy: str, inherited: list[InheritedSocket], emitter: Any,
             env: Mapping[str, str], feed: Callable[[Any], None] = no_feed) -> LibraryPool:
    dispatcher = PrimaryDispatcher(loop, policy, inherited, {})
    return LibraryPool(loop, dispatcher, emitter, env, feed)


def close_inherited(inherited: list[InheritedSocket]) -> None:
    for sock in inherited:
        with contextlib.suppress(OSError):
            sock.sock.close()


__all__ = ["LibraryPool", "PrimaryDispatcher", "close_inherited", "new_pool"]
