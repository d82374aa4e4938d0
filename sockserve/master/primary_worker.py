"""Node's ``cluster.Worker`` in the primary (``cluster.workers[id]``), over the pool's
WorkerHandle, and the ``Unstarted`` worker ``fork()`` returns once the primary is stopping."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from ..cluster.events import EventEmitter, Life
from .workers import WorkerHandle


class WorkerProcess:
    """``worker.process``: ``pid``, ``exit_code``, ``signal_code`` (Node's ChildProcess fields)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid  # None: never started (Unstarted)
        self.exit_code: int | None = None
        self.signal_code: str | None = None

    def kill(self, sig: int | str = "SIGTERM") -> bool:
        number = getattr(signal, sig) if isinstance(sig, str) else sig
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, number)
        except ProcessLookupError:
            return False
        return True


class Worker(EventEmitter):
    """Node's ``cluster.Worker`` in the primary (``cluster.workers[id]``)."""

    def __init__(self, handle: WorkerHandle, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.id = handle.id
        self.process = WorkerProcess(handle.pid)
        self._handle, self._loop, self._life = handle, loop, Life()

    @property
    def state(self) -> str:
        return self._life.state

    @property
    def exited_after_disconnect(self) -> bool | None:
        return self._life.exited_after_disconnect

    def send(self, message: Any) -> bool:
        """A JSON value to the worker (its ``cluster.worker.on("message")``)."""
        if self._handle.channel.closed:
            return False
        self._handle.send(message)
        return True

    def disconnect(self) -> Worker:
        """The worker closes its servers, finishes its connections and exits (0)."""
        self._life.ask()
        self._handle.disconnect(self._loop.time())
        return self

    def kill(self, sig: int | str = "SIGTERM") -> None:
        """Signal the worker (default SIGTERM) without waiting for a graceful disconnect."""
        self._life.ask()
        self._handle.killed = True
        self.process.kill(sig)

    destroy = kill

    def is_connected(self) -> bool:
        return self._life.connected

    def is_dead(self) -> bool:
        return self._life.dead

    def __repr__(self) -> str:
        return f"<Worker id={self.id} pid={self.process.pid} state={self.state}>"


class Unstarted(Worker):
    """What ``fork()`` returns once the primary got SIGTERM / SIGINT: no process is started.
    Node's primary dies of those signals, so its documented ``cluster.on("exit", ... fork())``
    never runs then; here the primary stops gracefully and emits ``exit`` for each worker, and
    a respawn from it would keep the stop from ever ending.  Dead from the start (``state``
    ``dead``, ``is_dead()``), ``process.pid`` None, never in ``cluster.workers``, no events;
    ``send()`` is False, ``disconnect()`` and ``kill()`` do nothing."""

    def __init__(self, worker_id: int) -> None:
        EventEmitter.__init__(self)
        self.id, self.process, self._life = worker_id, WorkerProcess(None), Life()
        self._life.exited()
        self._life.disconnected()

    def send(self, message: Any) -> bool:
        return False

    def disconnect(self) -> Worker:
        return self

    def kill(self, sig: int | str = "SIGTERM") -> None:
        return None

