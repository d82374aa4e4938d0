"""The worker processes, I/O only: spawn, signal, reap, and turn what workers say into events.

The supervisor core (supervisor.py) decides; the pool carries out its Spawn,
Disconnect and Kill actions and reports back through ``feed``: Online,
Listening, BootError, Exited (classified by process.classify_exit), SpawnFailed
(any OSError, EMFILE on socketpair() included) and Silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping

from ..cluster import protocol
from ..cluster.channel import Channel, socketpair
from ..cluster.peer import WorkerPeer, WorkerState
from ..cluster.protocol import Message, ProtocolError
from ..config import Config
from ..systemd import log_event
from . import lifecycle as L
from . import process
from .events import Emitter
from .handoff import Dispatcher
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")


class Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher, emitter: Emitter,
                 env: Mapping[str, str], feed: Callable[[L.Event], None]) -> None:
        self.loop = loop
        self.dispatcher = dispatcher
        self.emitter = emitter
        self.env = dict(env)
        self.feed = feed
        self.workers: dict[int, WorkerHandle] = dispatcher.workers
        self.configs: dict[int, Config] = {}  # worker id -> its generation's config
        self.served_by_dead = 0
        self._kill_reasons: dict[int, str] = {}  # worker id -> why the master stops it (kill)
        self.spawn_failures = 0
        self.on_ack: Callable[[], None] = lambda: None
        self._gone: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ actions
    def spawn(self, action: L.Spawn, restarts: int = 0) -> None:
        """Start worker ``action.worker``; a failure (fds, exec) is fed back as SpawnFailed."""
        config: Config = action.config
        names = {key: listener.name for key, listener in self.dispatcher.listeners.items()}
        told = config.for_worker(action.generation, names)  # keys, names, each key's app
        env = {**self.env, "SOCKSERVE_WORKER_ID": str(action.worker),
               "SOCKSERVE_WORKER_CONFIG": json.dumps(told)}
        try:
            master_end, worker_end = socketpair()
        except OSError as exc:  # EMFILE: the slot is retried after its back-off
            self._spawn_failed(action, exc)
            return
        try:
            spawned = process.spawn_worker(env, worker_end, process.worker_argv(config.worker_python))
        except OSError as exc:
            master_end.close()
            self._spawn_failed(action, exc)
            return
        finally:
            worker_end.close()
        self._started(action, config, spawned, master_end, restarts)

    def _spawn_failed(self, action: L.Spawn, exc: OSError) -> None:
        self.spawn_failures += 1
        self.feed(L.SpawnFailed(action.worker, str(exc)))

    def _started(self, action: L.Spawn, config: Config, spawned: process.Spawned,
                 master_end: socket.socket, restarts: int) -> None:
        now = self.loop.time()
        worker = WorkerHandle(
            id=action.worker, slot=action.slot, generation=action.generation, pid=spawned.pid,
            pidfd=spawned.pidfd, channel=None,  # type: ignore[arg-type]  # set below: it needs the handle
            peer=WorkerPeer(action.worker, tuple(self.dispatcher.listeners)), started=now,
            last_seen=now, restarts=restarts)
        worker.channel = Channel(master_end, "worker", lambda m, f: self._received(worker, m, f),
                                 lambda reason: self._channel_closed(worker, reason),
                                 lambda reason: self._fault(worker, reason))
        worker.channel.start(self.loop)
        self.workers[worker.id] = worker
        self.configs[worker.id] = config
        self.dispatcher.assign(worker.id, config.policy)
        self.loop.add_reader(spawned.pidfd, self._reap, worker)
        log_event(log, logging.INFO, "worker_spawn", f"worker {worker.id} started (pid {spawned.pid})",
                  worker_id=worker.id, pid=spawned.pid, generation=worker.generation)
        self.emitter.emit("fork", worker)

    def disconnect(self, worker_id: int) -> None:
        if worker := self.workers.get(worker_id):
            worker.disconnect(self.loop.time())

    def kill(self, worker_id: int, sig: int, reason: str = "") -> None:
        """Signal a worker; ``reason``: why the master stops it, said when it exits."""
        if worker := self.workers.get(worker_id):
            if reason:
                self._kill_reasons[worker_id] = reason
            worker.kill(sig)

    def kill_all(self) -> asyncio.Future[None]:
        """SIGKILL every worker left; resolves once the last is reaped."""
        self._gone = self.loop.create_future()
        for worker in list(self.workers.values()):
            worker.kill(signal.SIGKILL)
        if not self.workers:
            self._gone.set_result(None)
        return self._gone

    # ------------------------------------------------------------ exits
    def _reap(self, worker: WorkerHandle) -> None:
        code = process.reap(worker.pid)
        if code is None:
            return
        self.loop.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        worker.channel.read_remaining()  # its last acks, before anything is re-handed
        worker.channel.close("exited")
        reason = process.classify_exit(code, requested=worker.disconnect_at is not None or worker.killed,
                                       listening=worker.peer.listening == set(worker.peer.keys),
                                       timed_out=worker.timed_out)
        if worker.fault:
            reason = process.ExitReason("crashed", code, f"replaced after a {worker.fault}")
        elif why := self._kill_reasons.pop(worker.id, ""):  # not a crash: the master's own doing
            reason = process.ExitReason(reason.kind, code, f"stopped by the master: {why}")
        worker.exit = reason
        worker.peer.event("exit")
        del self.workers[worker.id]
        self.configs.pop(worker.id, None)
        self.served_by_dead += worker.counters.served
        self.dispatcher.worker_gone(worker)
        level = logging.INFO if reason.kind == "disconnected" else logging.WARNING
        log_event(log, level, "worker_exit", f"worker {worker.id} (pid {worker.pid}) {reason.text}",
                  worker_id=worker.id, pid=worker.pid, generation=worker.generation,
                  exit_kind=reason.kind, exit_code=code)
        self.emitter.emit("exit", worker, reason)
        self.feed(L.Exited(worker.id, reason.kind, code, reason.text, self.loop.time() - worker.started))
        if not self.workers and self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    # ------------------------------------------------------------ messages
    def _received(self, worker: WorkerHandle, msg: Message, fds: list[int]) -> None:
        worker.last_seen = self.loop.time()
        if worker.fault:  # dying: only its acks still count (it owns those connections)
            if isinstance(msg, protocol.Ack):
                with contextlib.suppress(ProtocolError):
                    self.dispatcher.ack(worker, msg)
            return
        try:
            before = worker.state
            after = worker.peer.receive(msg)
            self._dispatch(worker, msg)
        except ProtocolError as exc:
            self._fault(worker, f"protocol error: {exc}")
            return
        if after is not before:
            self._state_changed(worker, after)

    def _dispatch(self, worker: WorkerHandle, msg: Message) -> None:
        if isinstance(msg, protocol.Ack):
            self.dispatcher.ack(worker, msg)
            self.on_ack()
        elif isinstance(msg, protocol.Heartbeat) and self.dispatcher.heartbeat(
                worker, msg, self.loop.time(), self.configs[worker.id].worker_timeout):  # out of fds too long
            self.feed(L.Recycle(worker.id, "fd_pressure"))  # successor first, then it drains
        elif isinstance(msg, protocol.QueryServer):
            self._reply(worker, msg)
        elif isinstance(msg, protocol.Listening):
            self.emitter.emit("listening", worker, msg.key)
        elif isinstance(msg, protocol.Close):
            self.dispatcher.worker_closed(worker)
        elif isinstance(msg, protocol.UserMessage):
            self.emitter.emit("message", worker, msg.payload)
        elif isinstance(msg, protocol.BootError):
            self.feed(L.BootError(worker.id, msg.reason))
        elif isinstance(msg, protocol.Recycle):  # max_requests, request_timeout (worker/guards.py)
            self.feed(L.Recycle(worker.id, msg.reason))

    def _reply(self, worker: WorkerHandle, query: protocol.QueryServer) -> None:
        """The server reply in the worker's own generation's policy (a reload may change it)."""
        mode = self.configs[worker.id].policy
        listener = self.dispatcher.listeners[query.key]
        fds = [listener.sock.fileno()] if mode == "shared" else []
        worker.channel.send(protocol.ServerReply(query.key, mode, listener.address), fds)

    def _state_changed(self, worker: WorkerHandle, state: WorkerState) -> None:
        if state is WorkerState.ONLINE:
            log_event(log, logging.DEBUG, "worker_online", f"worker {worker.id} online",
                      worker_id=worker.id, pid=worker.pid, generation=worker.generation)
            self.emitter.emit("online", worker)
            self.feed(L.Online(worker.id))
        elif state is WorkerState.LISTENING:
            log_event(log, logging.INFO, "worker_listening", f"worker {worker.id} listening",
                      worker_id=worker.id, pid=worker.pid, generation=worker.generation)
            self.dispatcher.worker_listening(worker)
            self.feed(L.Listening(worker.id))

    def _channel_closed(self, worker: WorkerHandle, reason: str | None) -> None:
        """EOF: the worker is exiting (its pidfd tells when).  Anything else: its fault."""
        self.emitter.emit("disconnect", worker)
        if reason not in (None, "exited"):
            self._fault(worker, reason)

    def _fault(self, worker: WorkerHandle, reason: str) -> None:
        """It broke the protocol: kill it.  Its un-acked connections are re-handed in ``_reap``,
        after its last acks are read (a worker acks before it reads, so those are untouched)."""
        if worker.fault:
            return
        worker.fault = reason
        log_event(log, logging.ERROR, "worker_protocol_error",
                  f"worker {worker.id} (pid {worker.pid}): {reason}; replacing it",
                  worker_id=worker.id, pid=worker.pid, generation=worker.generation)
        process.kill(worker.pid, signal.SIGKILL)

    # ------------------------------------------------------------ silence
    def check_silence(self, now: float, stalled: float) -> None:
        """Read every channel dry first, forgive ``stalled`` seconds the master itself did not run,
        then report serving workers silent past their worker_timeout."""
        for worker in list(self.workers.values()):
            worker.channel.read_remaining()
            worker.last_seen += stalled
        for worker in list(self.workers.values()):
            timeout = self.configs[worker.id].worker_timeout
            silent = now - worker.last_seen
            if worker.state is WorkerState.LISTENING and silent > timeout and not worker.timed_out:
                worker.timed_out = True
                why = f"silent for {silent:.1f}s (worker_timeout {timeout:g}s)"
                log_event(log, logging.ERROR, "worker_timeout",
                          f"worker {worker.id} (pid {worker.pid}) {why}; killing it",
                          worker_id=worker.id, pid=worker.pid, generation=worker.generation)
                self.feed(L.Silent(worker.id, why))

    def hung(self, now: float) -> tuple[int, ...]:
        """Workers silent for three heartbeats with hand-offs they have not acked: at a stop they
        are killed first, so their rr windows go to workers that still take connections."""
        def unacked(w: WorkerHandle) -> int:
            return w.counters.handed - w.counters.accepted - w.counters.rejected

        return tuple(w.id for w in self.workers.values()
                     if w.state is WorkerState.LISTENING and unacked(w) > 0
                     and now - w.last_seen > 3 * self.configs[w.id].heartbeat_interval())
