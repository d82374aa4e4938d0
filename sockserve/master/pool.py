"""The worker pool: spawn, reap and replace workers; route their messages.

Workers live in numbered slots of a generation.  A crashed worker's slot is
refilled after its back-off; a worker the master asked to leave is not.  A
reload starts a new generation beside the current one and retires the old
one once the new one listens (see master.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping

from ..cluster import protocol
from ..cluster.channel import Channel, socketpair
from ..cluster.peer import WorkerPeer, WorkerState
from ..cluster.protocol import Message, ProtocolError
from ..config import Config
from ..systemd import log_event
from . import process
from .backoff import Backoff
from .deadlines import overdue
from .events import Emitter
from .handoff import Dispatcher
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")


class BootFailure(Exception):
    """A generation could not start: the app does not load."""


class Pool:
    def __init__(self, loop: asyncio.AbstractEventLoop, config: Config, dispatcher: Dispatcher,
                 emitter: Emitter, env: Mapping[str, str], on_change: Callable[[], None]) -> None:
        self.loop = loop
        self.config = config
        self.dispatcher = dispatcher
        self.emitter = emitter
        self.env = dict(env)
        self.on_change = on_change
        self.workers: dict[int, WorkerHandle] = dispatcher.workers
        self.generation = 0  # the serving generation
        self.size = config.workers
        self.served_by_dead = 0
        self.spawn_failures = 0
        self._next_id = 1
        self._last_generation = 0
        self.active: set[int] = set()  # generations whose crashed workers are replaced
        self._configs: dict[int, Config] = {}  # what each generation runs
        self._backoffs: dict[tuple[int, int], Backoff] = {}  # (generation, slot)
        self._restarts: dict[tuple[int, int], int] = {}
        self._pending: set[tuple[int, int]] = set()  # slots waiting out a back-off
        self._boot_errors: dict[int, str] = {}  # generation -> first reason
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    # ------------------------------------------------------------ generations
    def next_generation(self) -> int:
        return self._last_generation + 1  # never reused, even after a failed reload

    def start_generation(self, generation: int, config: Config) -> None:
        """Spawn ``config.workers`` workers running ``config``'s app as ``generation``."""
        self._last_generation = max(self._last_generation, generation)
        self._configs[generation] = config
        self.active.add(generation)
        for slot in range(config.workers):
            self.spawn_worker(generation, slot)

    def members(self, generation: int) -> list[WorkerHandle]:
        return [w for w in self.workers.values() if w.generation == generation]

    def generation_ready(self, generation: int) -> asyncio.Future[None]:
        """Resolves when every slot of ``generation`` listens; fails on a boot failure."""
        future = self.loop.create_future()
        self._waiters.append((generation, future))
        self._check_waiters()
        return future

    def retire(self, generation: int, kill: bool = False, sig: int = signal.SIGKILL) -> None:
        """Disconnect (or kill) every worker of ``generation``; none is replaced."""
        self.active.discard(generation)
        self._configs.pop(generation, None)
        self._pending = {p for p in self._pending if p[0] != generation}
        for table in (self._backoffs, self._restarts):
            for key in [k for k in table if k[0] == generation]:
                del table[key]
        for worker in self.members(generation):
            if kill:
                worker.kill(sig)
            else:
                worker.disconnect(self.loop.time())

    def retire_all(self, kill: bool, sig: int = signal.SIGKILL) -> None:
        for generation in self.active | {w.generation for w in self.workers.values()}:
            self.retire(generation, kill, sig)

    def resize(self, size: int) -> None:
        """TTIN/TTOU: grow or shrink the serving generation."""
        self.size = max(1, size)
        for worker in self.members(self.generation):
            if worker.slot >= self.size:
                worker.disconnect(self.loop.time())
        self.manage_workers()

    def manage_workers(self) -> None:
        """Fill every empty slot of the serving generation (unless it waits out a back-off)."""
        if self.generation in self._boot_errors or self.generation not in self.active:
            return
        taken = {w.slot for w in self.members(self.generation) if w.disconnect_at is None}
        for slot in range(self.size):
            if slot not in taken and (self.generation, slot) not in self._pending:
                self.spawn_worker(self.generation, slot)

    # ------------------------------------------------------------ spawn and reap
    def spawn_worker(self, generation: int, slot: int) -> WorkerHandle | None:
        worker_id, self._next_id = self._next_id, self._next_id + 1
        master_end, worker_end = socketpair()
        config = self._configs.get(generation, self.config)
        told = config.for_worker(generation, tuple(self.dispatcher.listeners))
        env = {**self.env, "SOCKSERVE_WORKER_ID": str(worker_id), "SOCKSERVE_WORKER_CONFIG": json.dumps(told)}
        try:
            spawned = process.spawn_worker(env, worker_end, process.worker_argv(config.worker_python))
        except OSError as exc:
            master_end.close()
            self.spawn_failures += 1
            log_event(log, logging.ERROR, "spawn_failed", f"cannot start worker: {exc}",
                      generation=generation)
            self._respawn_later(generation, slot, 0.0)
            return None
        finally:
            worker_end.close()
        now = self.loop.time()
        worker = WorkerHandle(
            id=worker_id, slot=slot, generation=generation, pid=spawned.pid, pidfd=spawned.pidfd,
            channel=None,  # type: ignore[arg-type]  # set below: it needs the handle
            peer=WorkerPeer(worker_id, tuple(self.dispatcher.listeners)), started=now,
            last_seen=now, restarts=self._restarts.get((generation, slot), 0))
        worker.channel = Channel(master_end, "worker", lambda m, f: self._received(worker, m, f),
                                 lambda reason: self._channel_closed(worker, reason),
                                 lambda reason: self._fault(worker, reason))
        worker.channel.start(self.loop)
        self.workers[worker_id] = worker
        self.loop.add_reader(spawned.pidfd, self._reap, worker)
        log_event(log, logging.INFO, "worker_spawn", f"worker {worker_id} started (pid {spawned.pid})",
                  worker_id=worker_id, pid=spawned.pid, generation=generation)
        self.emitter.emit("fork", worker)
        return worker

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
        worker.exit = reason
        worker.peer.event("exit")
        del self.workers[worker.id]
        self.served_by_dead += worker.counters.served
        self.dispatcher.worker_gone(worker)
        level = logging.INFO if reason.kind == "disconnected" else logging.WARNING
        log_event(log, level, "worker_exit", f"worker {worker.id} (pid {worker.pid}) {reason.text}",
                  worker_id=worker.id, pid=worker.pid, generation=worker.generation,
                  exit_kind=reason.kind, exit_code=code)
        self.emitter.emit("exit", worker, reason)
        if reason.kind == "boot_failure":
            self._boot_errors.setdefault(worker.generation, "cannot load the application (exit code 6)")
        elif reason.respawn:
            self._respawn_later(worker.generation, worker.slot, self.loop.time() - worker.started)
        self._check_waiters()
        self.on_change()

    def _slot_wanted(self, generation: int, slot: int) -> bool:
        return generation in self.active and not (generation == self.generation and slot >= self.size)

    def _respawn_later(self, generation: int, slot: int, lived: float) -> None:
        """Refill a crashed worker's slot after the slot's back-off."""
        if not self._slot_wanted(generation, slot):
            return
        key = (generation, slot)
        backoff = self._backoffs.setdefault(key, Backoff(self.config.restart_delay_max,
                                                         self.config.stable_after))
        delay = backoff.exited(lived, crashed=True)
        self._restarts[key] = self._restarts.get(key, 0) + 1
        self._pending.add(key)
        self.loop.call_later(delay, self._respawn_due, key)

    def _respawn_due(self, key: tuple[int, int]) -> None:
        if key in self._pending:
            self._pending.discard(key)
            if self._slot_wanted(*key):
                self.spawn_worker(*key)

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
        elif isinstance(msg, protocol.Heartbeat) and self.dispatcher.heartbeat(
                worker, msg, self.loop.time(), self.config.worker_timeout):  # out of fds too long
            worker.disconnect(self.loop.time())
            self.manage_workers()
        elif isinstance(msg, protocol.QueryServer):
            self.dispatcher.reply(worker, msg)
        elif isinstance(msg, protocol.Listening):
            self.emitter.emit("listening", worker, msg.key)
        elif isinstance(msg, protocol.Close):
            self.dispatcher.worker_closed(worker)
        elif isinstance(msg, protocol.UserMessage):
            self.emitter.emit("message", worker, msg.payload)
        elif isinstance(msg, protocol.BootError):
            self._boot_errors.setdefault(worker.generation, msg.reason)

    def _state_changed(self, worker: WorkerHandle, state: WorkerState) -> None:
        if state is WorkerState.ONLINE:
            log_event(log, logging.DEBUG, "worker_online", f"worker {worker.id} online",
                      worker_id=worker.id, pid=worker.pid, generation=worker.generation)
            self.emitter.emit("online", worker)
        elif state is WorkerState.LISTENING:
            log_event(log, logging.INFO, "worker_listening", f"worker {worker.id} listening",
                      worker_id=worker.id, pid=worker.pid, generation=worker.generation)
            self.dispatcher.worker_listening(worker)
            self._check_waiters()
            self.on_change()

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

    # ------------------------------------------------------------ readiness
    def _check_waiters(self) -> None:
        still = []
        for generation, future in self._waiters:
            if future.done():
                continue
            error = self._boot_errors.get(generation)
            members = self.members(generation)
            if error is not None:
                future.set_exception(BootFailure(error))
            elif len(members) >= self._configs[generation].workers and all(w.listening for w in members):
                future.set_result(None)
            else:
                still.append((generation, future))
        self._waiters = still

    def check_timeouts(self, now: float) -> None:
        """Kill workers that are overdue (see deadlines.py); a silent one is replaced."""
        for worker in list(self.workers.values()):
            why = overdue(worker.state, started=worker.started, last_seen=worker.last_seen,
                          disconnect_at=worker.disconnect_at, now=now, config=self.config)
            if why is None or worker.killed or worker.timed_out:
                continue
            log_event(log, logging.ERROR, "worker_timeout", f"worker {worker.id} (pid {worker.pid}) {why}; "
                      "killing it", worker_id=worker.id, pid=worker.pid, generation=worker.generation)
            if worker.disconnect_at is not None:
                worker.kill()
            else:
                worker.timed_out = True
                process.kill(worker.pid, signal.SIGKILL)
