"""The worker process: ``python -m sockserve.worker``, started by the master.

It loads the app, says ``Online``, asks the master for each server key and
serves connections (handed over one by one in ``rr``, accepted from a shared
or an own ``SO_REUSEPORT`` listener otherwise) until the master says
``Disconnect``; then it drains and exits 0.  If the channel closes, it exits
at once: a worker never outlives its master.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from ..cluster import protocol
from ..cluster.channel import Channel
from ..cluster.protocol import Message
from ..config import EXIT_APP, EXIT_FAILURE, EXIT_OK, ConfigError
from ..eventloop import run_soon
from ..listeners import bind_reuseport
from . import apps, drain, limits
from .fdpressure import RESUME_AT, Acceptor, FdBudget
from .handed import Handed, socket_of

log = logging.getLogger("sockserve.worker")

# The running Worker of this process (Node's cluster.worker); the one
# process-wide slot sockserve keeps, set once by Worker.run.
_running: dict[str, Worker] = {}


def current_worker() -> Worker | None:
    """The Worker running in this process, or None (in the master, or outside sockserve)."""
    return _running.get("worker")


class Worker:
    """One worker's side of the cluster protocol."""

    sigterm_drains = True  # SIGTERM: disconnect (drain, exit 0); False: the default, a kill (Node)

    def __init__(self, worker_id: int, config: dict[str, Any], sock: socket.socket,
                 adapter: apps.StreamAdapter | apps.AsgiAdapter,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.id = worker_id
        self.pid = os.getpid()
        self.generation = int(config.get("generation", 0))
        self.config = config
        self.adapter = adapter
        limits.apply(adapter, limits.HttpLimits.from_worker_config(config))  # HTTP bounds
        self.loop = loop
        self.keys: tuple[str, ...] = tuple(config.get("keys", ()))
        self.disconnecting = False
        self.handed = Handed(loop, adapter, config)  # rr: from our accept to a set-up protocol
        self._channel = Channel(sock, "master", self._on_message, self._on_channel_close,
                                on_fds_lost=self._on_fds_lost)
        self.fds = FdBudget(self._paused)  # fd pressure: see fdpressure.py
        self._listeners: dict[str, list[Callable[..., Any]]] = {}
        self._rr_keys: set[str] = set()
        # (seq, socket) to ack, by verdict; a socket is served once its ack is sent
        self._acks: dict[bool, list[tuple[int, socket.socket | None]]] = {True: [], False: []}
        self._answered: set[str] = set()
        self._servers: list[Acceptor] = []
        self._started = asyncio.Event()
        self._hurry = asyncio.Event()  # a fast stop: cancel now instead of draining
        self._exit: asyncio.Future[int] = loop.create_future()

    # ------------------------------------------------------------ public API
    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback(payload)`` for each ``message``; ``callback()`` on ``disconnect``."""
        self._listeners.setdefault(event, []).append(callback)

    def send(self, payload: Any) -> None:
        """Send a JSON value to the master (its ``message`` event)."""
        self._channel.send(protocol.UserMessage(payload))

    def recycle(self, reason: str) -> None:
        """Ask the master to replace this worker (recycling.py); it serves on until disconnected."""
        self._channel.send(protocol.Recycle(reason))

    # ------------------------------------------------------------ lifecycle
    async def run(self) -> int:
        """Serve until disconnected; the exit code."""
        _running["worker"] = self
        self._channel.start(self.loop)
        if self.sigterm_drains:
            self.loop.add_signal_handler(signal.SIGTERM, self.disconnect)
        self.loop.add_signal_handler(signal.SIGQUIT, self.quit)
        self._channel.send(protocol.Online(self.id, self.pid))
        self.event("online", "worker %d online (pid %d)", self.id, self.pid)
        beats = self.loop.create_task(self._heartbeats())  # alive during a slow startup too
        try:
            return await self._start_and_serve()
        finally:
            beats.cancel()
            self._beat()  # the last counts, so the master's totals include this worker's work

    async def _start_and_serve(self) -> int:
        try:
            await self.adapter.startup()
        except apps.AppStartupError as exc:
            self._channel.send(protocol.BootError(f"application startup failed: {exc}"))
            return EXIT_APP
        finally:
            self._started.set()
        for key in () if self.disconnecting else self.keys:
            self._channel.send(protocol.QueryServer(key))
        return await self._exit

    def finish(self, code: int) -> None:
        if not self._exit.done():
            self._exit.set_result(code)

    def disconnect(self) -> None:
        """Stop taking connections, drain open ones, then exit 0 (Disconnect or SIGTERM)."""
        if self.disconnecting:
            return
        self.disconnecting = True
        self.event("disconnect", "worker %d disconnecting", self.id)
        for key in sorted(self._rr_keys):
            self._channel.send(protocol.Close(key))
        self._rr_keys.clear()
        for server in self._servers:
            server.close()
        self._emit("disconnect")
        self.loop.create_task(self._drain())

    def quit(self) -> None:
        """Fast stop (SIGQUIT, on the master's SIGINT): drain.py's stop, at once."""
        self._hurry.set()
        self.disconnect()

    async def _drain(self) -> None:
        await self._started.wait()  # then drain, cancel, lifespan shutdown: before the master's SIGKILL
        timeout, began = float(self.config.get("graceful_timeout", 30.0)), self.loop.time()
        await self.handed.settled(timeout)  # connections we acked are ours: set up first
        await drain.drain(self.adapter, max(0.0, timeout - (self.loop.time() - began)), hurry=self._hurry)
        self.finish(EXIT_OK)

    async def _heartbeats(self) -> None:
        interval = float(self.config.get("heartbeat_interval", 1.0))
        while True:
            if self.fds.paused:
                if self.fds.may_resume(self.adapter.open):
                    self._resume()
            else:
                self.fds.refresh(self.adapter.open)  # the app's own fds count too
            self._beat()
            await asyncio.sleep(interval)

    def _beat(self) -> None:
        self._channel.send(protocol.Heartbeat(self.adapter.open, self.adapter.served, self.fds.paused))

    # ------------------------------------------------------------ fd pressure
    def _paused(self) -> None:
        """Out of fds: take no connection until some are free; tell the master now."""
        for server in self._servers:
            server.stop()
        self.event("fd_pressure", "worker %d paused: near its fd limit (%d open connections); "
                   "taking no new connection until %d fds are free", self.id, self.adapter.open,
                   RESUME_AT, level=logging.WARNING)
        self._beat()

    def _resume(self) -> None:
        self.event("fd_pressure_end", "worker %d takes connections again", self.id)
        for server in self._servers:
            server.start()

    def _on_fds_lost(self, msg: Message, fds: list[int]) -> None:
        """A record whose fds did not fit in our fd table (MSG_CTRUNC): reject, never die."""
        for fd in fds:
            os.close(fd)
        self.fds.exhausted()
        if isinstance(msg, protocol.NewConn):
            for seq in msg.seqs:
                self._ack_later(seq, None)
        else:
            self.event("server_error", "cannot receive %s's fd: the fd table is full",
                       type(msg).__name__, level=logging.ERROR)
            self.finish(EXIT_FAILURE)

    # ------------------------------------------------------------ messages
    def _on_message(self, msg: Message, fds: list[int]) -> None:
        if isinstance(msg, protocol.NewConn):
            self._on_newconn(msg, fds)
        elif isinstance(msg, protocol.ServerReply):
            self._on_server_reply(msg, fds)
        elif isinstance(msg, protocol.Disconnect):
            self.disconnect()
        elif isinstance(msg, protocol.UserMessage):
            self._emit("message", msg.payload)

    def _on_newconn(self, msg: protocol.NewConn, fds: list[int]) -> None:
        """Take the handed connections (or refuse them when disconnecting); acks go out batched."""
        taking = not self.disconnecting and msg.key in self._rr_keys
        if taking and self.fds.low(self.adapter.open + len(fds), taking=0):
            taking = False  # near the fd limit: reject, the master re-hands them
        for seq, fd in zip(msg.seqs, fds, strict=True):
            sock = socket_of(fd) if taking else None
            if sock is None:
                os.close(fd)
            else:
                self.handed.taken(sock, msg.key)  # its listener's app, a PROXY header first?
            self._ack_later(seq, sock)

    def _ack_later(self, seq: int, sock: socket.socket | None) -> None:
        if not self._acks[True] and not self._acks[False]:
            self.loop.call_soon(self._send_acks)  # one Ack for all records read in this pass
        self._acks[sock is not None].append((seq, sock))

    def _send_acks(self) -> None:
        """Acks go ahead of anything queued; a connection is read only once its ack is sent
        (a worker dying before that leaves it untouched for the master to re-hand)."""
        for accepted, pending in self._acks.items():
            for start in range(0, len(pending), protocol.MAX_FDS):
                chunk = pending[start:start + protocol.MAX_FDS]
                socks = [sock for _, sock in chunk if sock is not None]
                self._channel.send(protocol.Ack(tuple(seq for seq, _ in chunk), accepted), urgent=True,
                                   on_sent=lambda socks=socks: self.handed.serve_all(socks))
            pending.clear()

    def _on_server_reply(self, msg: protocol.ServerReply, fds: list[int]) -> None:
        if msg.key not in self.keys or msg.key in self._answered or self.disconnecting:
            for fd in fds:
                os.close(fd)
            return
        self._answered.add(msg.key)
        self.handed.proxy.listener(msg.key, msg.address)  # --proxy-protocol (proxyread.py)
        if msg.mode == "rr":
            self._rr_keys.add(msg.key)
            self._listening(msg.key)
        elif msg.mode == "shared":
            self.loop.create_task(self._serve(msg.key, socket.socket(fileno=fds[0])))
        elif msg.mode == "reuseport":
            self.loop.create_task(self._serve_reuseport(msg.key, msg.address))
        else:
            error = msg.error or f"unknown mode {msg.mode!r}"
            self.event("server_error", "cannot serve %s: %s", msg.key, error, level=logging.ERROR)
            self.finish(EXIT_FAILURE)

    async def _serve_reuseport(self, key: str, address: str) -> None:
        try:
            sock = bind_reuseport(address)
        except (OSError, ConfigError) as exc:
            self.event("server_error", "cannot listen on %s: %s", address, exc, level=logging.ERROR)
            self.finish(EXIT_FAILURE)
            return
        await self._serve(key, sock)

    async def _serve(self, key: str, sock: socket.socket) -> None:
        """Accept on ``sock`` ourselves, so that fd pressure can pause it (fdpressure.py)."""
        try:
            sock.setblocking(False)
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):  # reuseport: ours
                sock.listen(int(self.config.get("backlog", 511)))  # never systemd's (Backlog=)
        except OSError as exc:
            sock.close()
            self.event("server_error", "cannot serve %s: %s", key, exc, level=logging.ERROR)
            self.finish(EXIT_FAILURE)
            return
        server = Acceptor(self.loop, sock, self.fds, lambda: self.adapter.open,
                          lambda conn: self.handed.accepted(conn, key))  # its listener's app
        if self.disconnecting:
            server.close()
            return
        self._servers.append(server)
        server.start()
        self._listening(key)

    def _listening(self, key: str) -> None:
        # logged first: the master's "ready" (after every worker's last Listening) follows it
        self.event("listening", "worker %d listening on %s", self.id, key)
        self._channel.send(protocol.Listening(key))

    def _on_channel_close(self, reason: str | None) -> None:
        """The master is gone (EOF) or broke the protocol: stop at once."""
        why = reason or "master closed the channel"
        self.event("channel_closed", "worker %d exits: %s", self.id, why, level=logging.WARNING)
        logging.shutdown()
        os._exit(EXIT_FAILURE)

    # ------------------------------------------------------------ helpers
    def _emit(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners.get(event, ())):
            try:
                if hasattr(result := callback(*args), "__await__"):  # async def: a task (Node)
                    run_soon(result, f"worker {event!r} listener")
            except Exception:
                log.exception("worker %r listener failed", event)

    def event(self, name: str, fmt: str, *args: Any, level: int = logging.INFO) -> None:
        """Log ``fmt % args`` with the structured fields journald gets."""
        extra = {"SOCKSERVE_EVENT": name, "WORKER_ID": self.id, "WORKER_PID": self.pid,
                 "GENERATION": self.generation}
        log.log(level, fmt, *args, extra=extra)
