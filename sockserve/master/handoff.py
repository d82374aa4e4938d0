"""The master's accept loop and hand-off path (rr), and server replies for every policy.

rr: accept while the workers have room in their windows, hand each fd to the
policy's choice with NewConn, close our copy on an accepted ack, re-hand on a
reject or a death.  Connections that do not fit stay in the kernel's accept
queue, which survives a restart of the master when systemd owns the socket.

When the C extension is built (native.py), the policy is its RoundRobin and the
two hot calls (accept, ack) run in C: accept4, the policy, sendmsg of NewConn
records, close.  What C cannot send (a channel with records queued, closed, or
a failed send) comes back as actions for the Python path (``_apply``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket

from ..cluster.protocol import MAX_FDS, Ack, Heartbeat, NewConn, ProtocolError, QueryServer, ServerReply
from ..listeners import Listener
from ..systemd import log_event
from . import native
from .policy_modes import PolicyModes
from .round_robin import Action, Handoff
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")
ACCEPT_BATCH = 64  # accepts per wake-up, so one busy listener cannot starve the loop
READ_BATCH = 64  # records read per wake-up of a worker's channel (as Channel does)
FD_EXHAUSTED_PAUSE = 0.5  # seconds accept pauses on EMFILE/ENFILE
FD_EXHAUSTED_LOG_EVERY = 10.0
MAX_QUEUED = 65536  # accept() calls to empty a queue at stop (backlog is at most 65535)


class Dispatcher(PolicyModes):
    def __init__(self, loop: asyncio.AbstractEventLoop, listeners: list[Listener], policy: str,
                 window: int, workers: dict[int, WorkerHandle]) -> None:
        self.loop = loop
        self.listeners = {listener.key: listener for listener in listeners}
        for listener in listeners:  # accept until EAGAIN: a blocking socket (systemd's) would hang us
            if listener.listening:
                listener.sock.setblocking(False)
        self.window = window
        self.workers = workers
        self.accepting = False
        self._readers: set[str] = set()  # keys whose accept reader is on ("*": C's epoll set)
        self._listening: set[int] = set()  # workers between worker_listening and worker_gone
        self._key_index: dict[str, int] = {}
        self._listen_fd, self._listen_engine = -1, None  # native: the epoll set of the listeners
        self._engine_fds: set[int] = set()
        self.native = False  # the C hot path (accept, ack) is on: policy_modes.py
        self.policy = self.make(policy)
        if native.is_native(self.policy):  # the loop calls C directly; C calls back when Python has work
            self._enter_native()
        self._paused_until = 0.0
        self._last_fd_log = -FD_EXHAUSTED_LOG_EVERY
        self.fd_exhausted = 0  # accept failures for lack of fds

    # ------------------------------------------------------------ server replies
    def reply(self, worker: WorkerHandle, query: QueryServer) -> None:
        listener = self.listeners[query.key]
        mode = self.policy.mode
        if mode == "shared":
            worker.channel.send(ServerReply(query.key, mode, listener.address), [listener.sock.fileno()])
        else:
            worker.channel.send(ServerReply(query.key, mode, listener.address))

    # ------------------------------------------------------------ workers come and go
    def worker_listening(self, worker: WorkerHandle) -> None:
        self._listening.add(worker.id)
        if self.native:  # instead of the channel's own reader
            self._attach(worker)
        self._join(worker)

    def rr_keys(self, worker: WorkerHandle) -> list[str]:
        """The keys whose rotation ``worker`` joins when it takes connections: in the
        service, every listener (every worker serves them all); the library primary
        overrides it with the worker's own listening rr handles."""
        return list(self.listeners)

    def _join(self, worker: WorkerHandle) -> None:
        actions: list[Action] = []
        for key in self.rr_keys(worker):
            actions += self.policy.add(worker.id, key)
        self._apply(actions)

    def _channel_event(self, worker_id: int, record: tuple[bytes, list[int], int] | None,
                       state: int) -> None:
        """From C's reading of a worker channel: a record that is not a plain ack (state 1),
        EOF or an error (2), a worker being replaced (3): the channel's own path takes it."""
        worker = self.workers.get(worker_id)
        if worker is None or worker.channel.closed:
            return
        if record is not None:
            worker.channel._deliver(*record)  # decode, the peer's state table, the pool
        else:
            worker.channel._read(1 if state == 2 else READ_BATCH)

    def _native_event(self, spill: list[Action], err: int) -> None:
        """From C's hot path: actions it could not do itself, an accept error; readers."""
        self._apply(spill)
        if err:
            self._accept_failed(OSError(err, os.strerror(err)))

    def worker_closed(self, worker: WorkerHandle) -> None:
        self._apply(self.policy.stop(worker.id))

    def worker_gone(self, worker: WorkerHandle) -> None:
        self._listening.discard(worker.id)
        if self.native:
            self.policy.detach(worker.id)
        self._apply(self.policy.remove(worker.id))
        self._unwrap()  # the last worker of a retired policy: maybe back to the C path

    def heartbeat(self, worker: WorkerHandle, beat: Heartbeat, now: float, bound: float) -> bool:
        """Back-pressure: a worker paused for lack of fds gets no hand-off until it says it has
        room (the policy's own ``stop`` / ``add``).  True when it has been paused longer than
        ``bound`` seconds: the caller replaces it."""
        worker.counters.open, worker.counters.served = beat.open, beat.served
        if beat.paused and worker.paused_since is None:
            worker.paused_since = now
            self._apply(self.policy.stop(worker.id))
        elif not beat.paused and worker.paused_since is not None:
            worker.paused_since = None
            if worker.listening and worker.disconnect_at is None and not worker.peer.closed:
                self._join(worker)
        if (worker.paused_since is None or now - worker.paused_since <= bound
                or worker.disconnect_at is not None):
            return False
        log_event(log, logging.WARNING, "worker_fd_pressure", f"worker {worker.id} (pid {worker.pid}) "
                  f"out of fds for over {bound:g}s (worker_timeout); replacing it",
                  worker_id=worker.id, pid=worker.pid, generation=worker.generation)
        return True

    def ack(self, worker: WorkerHandle, ack: Ack) -> None:
        """Raises ProtocolError for an ack the worker had no reason to send.

        The seqs before the bad one still count: what they decided is done
        (closed, handed on), so no connection waits on a hand-off never sent.
        """
        if ack.accepted:
            worker.counters.accepted += len(ack.seqs)
        else:
            worker.counters.rejected += len(ack.seqs)
        if self.native:
            spill, error = self.policy.ack_many(worker.id, ack.seqs, ack.accepted)
            self._apply(spill)
            if error is not None:
                raise ProtocolError(error)
            return
        actions: list[Action] = []
        try:
            for seq in ack.seqs:
                actions += self.policy.ack(worker.id, seq, ack.accepted)
        finally:
            self._apply(actions)

    # ------------------------------------------------------------ accepting
    def start_accepting(self) -> None:
        self.accepting = True
        self._update_readers()

    def stop_accepting(self) -> None:
        self.accepting = False
        self._update_readers()

    def _update_readers(self) -> None:
        want = self.accepting and self.policy.mode == "rr" and self.loop.time() >= self._paused_until
        if self.native:  # C polls the listeners only while the workers have room, too
            self.policy.set_accepting(want)
            if want and not self._readers and self._listen_fd >= 0:
                self.loop.add_reader(self._listen_fd, self.policy.on_listener)
                self._readers.add("*")
            return
        for key, listener in self.listeners.items():  # a listener is read while its key has room
            if want and key not in self._readers and self.policy.capacity(key) > 0:
                self.loop.add_reader(listener.sock.fileno(), self._accept, listener)
                self._readers.add(key)
            elif key in self._readers and not (want and self.policy.capacity(key) > 0):
                self.loop.remove_reader(listener.sock.fileno())
                self._readers.discard(key)

    def _accept(self, listener: Listener) -> None:
        """Accept what the workers have room for; hand it out in one batch per worker."""
        accept = listener.sock._accept  # (fd, address): no socket object on the hot path
        actions: list[Action] = []
        for _ in range(ACCEPT_BATCH):
            if self.policy.capacity(listener.key) <= 0:
                break
            try:
                fd, _ = accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the client gave up before we accepted
                self._apply(actions)
                self._accept_failed(exc)
                return
            actions += self.policy.distribute((listener.key, fd), listener.key)
        self._apply(actions)

    def _accept_failed(self, exc: OSError) -> None:
        if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            raise exc
        self._fd_exhausted(exc)

    def _fd_exhausted(self, exc: OSError) -> None:
        """Out of fds: pause accepting instead of spinning; log once per interval."""
        self.fd_exhausted += 1
        now = self.loop.time()
        self._paused_until = now + FD_EXHAUSTED_PAUSE
        if now - self._last_fd_log >= FD_EXHAUSTED_LOG_EVERY:
            self._last_fd_log = now
            log_event(log, logging.WARNING, "accept_paused",
                      f"accept failed ({exc.strerror}); pausing {FD_EXHAUSTED_PAUSE}s "
                      f"({self.fd_exhausted} times so far)")
        self._update_readers()
        self.loop.call_later(FD_EXHAUSTED_PAUSE, self._update_readers)

    def _apply(self, actions: list[Action]) -> None:
        batches: dict[tuple[int, str], list[Handoff]] = {}  # (worker, key) -> hand-offs, in order
        for action in actions:
            if isinstance(action, Handoff):
                batches.setdefault((action.worker_id, action.conn[0]), []).append(action)
            else:
                os.close(action.conn[1])
        for (worker_id, key), handoffs in batches.items():
            self._handoff(self.workers[worker_id], key, handoffs)
        self._update_readers()

    def _handoff(self, worker: WorkerHandle, key: str, handoffs: list[Handoff]) -> None:
        """NewConn records of up to MAX_FDS fds each: one sendmsg for a burst, not one per fd."""
        worker.counters.handed += len(handoffs)
        worker.counters.rehanded += sum(1 for h in handoffs if h.rehand)
        for start in range(0, len(handoffs), MAX_FDS):
            chunk = handoffs[start:start + MAX_FDS]
            worker.channel.send(NewConn(key, tuple(h.seq for h in chunk)), [h.conn[1] for h in chunk])

    # ------------------------------------------------------------ shutdown
    def waiting(self) -> int:
        return self.policy.waiting()

    def stop_listening(self) -> None:
        """A stop: sockets we bound refuse new clients at once; systemd's are only not read.

        A socket passed by systemd keeps queueing for the next start (systemd holds it).
        Ours get ``shutdown(SHUT_RD)``, which acts on the socket, not on this process's
        fd: the copies shared workers hold stop too, new clients get ECONNREFUSED (and
        retry elsewhere) instead of waiting in a queue nobody reads.  What is queued is
        never left hanging: rr accepts it first and hands it out (``waiting()``); TCP
        resets what arrives in between, and unix sockets keep theirs, taken after.
        Other policies shut down after this step of the loop, when the workers'
        Disconnect (sent in the same step) went out: their accept loops close first.
        """
        self.stop_accepting()
        ours = [lst for lst in self.listeners.values() if lst.listening and not lst.inherited]
        if self.policy.mode == "rr":
            self._close_queues(ours)
        else:
            self.loop.call_soon(self._close_queues, ours)

    def _close_queues(self, listeners: list[Listener]) -> None:
        for listener in listeners:
            self._take_queued(listener)
            with contextlib.suppress(OSError):
                listener.sock.shutdown(socket.SHUT_RD)
            self._take_queued(listener)

    def _take_queued(self, listener: Listener) -> None:
        """Accept what waits in the queue: rr hands it out to listening workers; with none
        (a stop while booting), or with shared, it is refused (closed), never left waiting."""
        if listener.sock.fileno() < 0:
            return
        listener.sock.setblocking(False)
        hand_out = self.policy.mode == "rr" and any(w.listening for w in self.workers.values())
        actions: list[Action] = []
        for _ in range(MAX_QUEUED):
            try:
                fd, _ = listener.sock._accept()
            except OSError:  # empty (EAGAIN), shut down (EINVAL), out of fds: TCP resets the rest
                break
            if hand_out:
                actions += self.policy.distribute((listener.key, fd), listener.key)
            else:
                os.close(fd)
        self._apply(actions)

    def close(self) -> None:
        self.stop_accepting()
        if "*" in self._readers:
            self.loop.remove_reader(self._listen_fd)
            self._readers.discard("*")
        for listener in self.listeners.values():
            listener.sock.close()
