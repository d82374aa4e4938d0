"""``--agent HOST:PORT``: the master answers HAProxy's agent-check (the line: agentcheck.py).

One line per connection, written as soon as the connection is accepted (HAProxy's
``agent-send`` string, if any, is read and ignored), then our side is shut (FIN);
what the client still sends is read and dropped, so closing never resets the
line away.  Served in the master's event loop by asyncio: the line is a few dozen
bytes computed from what the master holds, so it never waits for the client.

Bounded against any client: at most ``MAX_CONNECTIONS`` at once (past it: the line,
then closed at once), ``MAX_READ`` bytes read per connection, ``LINGER`` seconds
for the client to close after our line.  A client's mistake (never reading, never
closing, flooding, resetting) ends that connection only.

Under systemd the agent listens on the socket unit's socket named ``agent``
(``FileDescriptorName=agent``, ``take_inherited``): never served to workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, parse_address
from ..listeners import Listener
from ..sockets import check_agent
from ..systemd import log_event
from ..systemd.listenfds import AGENT
from .agentcheck import WORKER_CONNECTIONS, Load, answer
from .generations import WorkerStage

if TYPE_CHECKING:
    from .master import Master

log = logging.getLogger("sockserve.master")
NAME = AGENT  # FileDescriptorName= of the agent's socket in the socket unit
MAX_CONNECTIONS = 64  # agent connections served at once
MAX_READ = 4096  # bytes read (and dropped) per connection
LINGER = 1.0  # seconds a client has to close after our line


def take_inherited(listeners: list[Listener]) -> tuple[Listener | None, list[Listener]]:
    """(the inherited socket named ``agent``, the other listeners): workers never see it."""
    agent = next((lst for lst in listeners if lst.inherited and lst.key == NAME), None)
    return agent, [lst for lst in listeners if lst is not agent]


def load_of(master: Master) -> Load:
    """The serving generation's ``Load``: the core's workers, the pool's heartbeats, rr's room."""
    core, config = master.core, master.config
    ids = [w.id for w in core.members(core.serving) if w.stage is WorkerStage.LISTENING]
    handles = master.pool.workers
    opened = sum(handles[i].counters.open for i in ids if i in handles)
    policy = master.dispatcher.policy
    room = max(0, int(policy.capacity())) if policy.mode == "rr" else None
    size = core.generations[core.serving].size if core.serving in core.generations else len(ids)
    return Load(listening=len(ids), size=size, open=opened, room=room, window=config.rr_window,
                per_worker=config.limit_concurrency or WORKER_CONNECTIONS)


def agent_line(master: Master) -> str:
    """What the agent answers now (agentcheck.answer of the master's state)."""
    core = master.core
    return answer(core.phase.value, core.stop_stage == "delay", load_of(master))


class AgentServer:
    """The agent of ``master``: on ``inherited`` (systemd's socket) or ``master.config.agent``."""

    def __init__(self, master: Master, inherited: Listener | None) -> None:
        self.master = master
        self.inherited = inherited
        self.address = ""
        self._server: asyncio.AbstractServer | None = None
        self._open = 0
        self.answered = 0  # connections answered (for tests and statistics)

    async def start(self) -> None:
        """Listen; ConfigError (exit 2) when the address cannot be bound or clashes with systemd's."""
        wanted = self.master.config.agent
        if self.inherited is not None:
            check_agent(wanted, self.inherited.address)  # serve.py checked it already: one path
            self._server = await asyncio.start_server(self._serve, sock=self.inherited.sock)
            self.address = self.inherited.address
        elif wanted:
            address = parse_address(wanted)
            try:
                self._server = await asyncio.start_server(self._serve, address.host, address.port,
                                                          reuse_address=True)
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio rewords strerror
                raise ConfigError(f"agent: cannot listen on {wanted}: {why}") from None
            host, port = self._server.sockets[0].getsockname()[:2]
            self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:
            return
        log_event(log, logging.INFO, "agent", f"HAProxy agent-check on {self.address}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (agent_line(self.master) + "\n").encode()
        except Exception:  # a bug of ours: no answer (HAProxy keeps its state), the master lives
            log.exception("agent: cannot compute the answer")
            writer.transport.abort()
            return
        writer.write(line)
        self.answered += 1
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        try:
            writer.write_eof()
            await asyncio.wait_for(_discard(reader), LINGER)
        except (OSError, TimeoutError, RuntimeError):
            pass
        finally:
            self._open -= 1
            writer.close()

    def statistics(self) -> dict[str, Any] | None:
        """``{"address", "answer", "answered"}`` for ``statistics()``; None without an agent."""
        if self._server is None:
            return None
        return {"address": self.address, "answer": agent_line(self.master), "answered": self.answered}

    def close(self) -> None:
        """Answer ``maint`` to the checks queued on the agent's socket, then stop listening
        (systemd's socket stays open in systemd for the next start).  The master is leaving:
        without this a queued check is closed with no line when the socket closes (HAProxy:
        a failed check, no state change), or, under systemd, wakes the service again."""
        if self._server is None:
            return
        for listening in self._server.sockets:
            self.answered += drain_queue(listening.fileno(), b"maint\n")
        self._server.close()
        self._server = None


def drain_queue(fd: int, line: bytes, limit: int = 1024) -> int:
    """Accept what is queued on the listening socket ``fd`` (at most ``limit``), send each
    ``line`` without waiting, read what it sent (so the close is a FIN, not a reset), close;
    how many were answered."""
    answered = 0
    with socket.socket(fileno=os.dup(fd)) as listening:
        listening.setblocking(False)
        for _ in range(limit):
            try:
                conn, _ = listening.accept()
            except OSError:  # BlockingIOError: the queue is empty
                break
            with conn, contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(line)
                answered += 1
                conn.shutdown(socket.SHUT_WR)
                conn.recv(MAX_READ)
    return answered


async def _discard(reader: asyncio.StreamReader) -> None:
    """Read what the client sends until it closes, at most MAX_READ bytes."""
    left = MAX_READ
    while left > 0:
        with contextlib.suppress(ConnectionError):
            data = await reader.read(left)
            if data:
                left -= len(data)
                continue
        return
