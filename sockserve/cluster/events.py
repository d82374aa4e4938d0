"""Node's ``EventEmitter`` and the order of a library worker's events, pure.

``EventEmitter``: ``on`` / ``once`` / ``off`` / ``emit`` / ``listener_count`` as Node's
(``events`` module), except that a listener that raises is logged and the others still run
(Node would throw from ``emit``; here a primary never dies of a listener's mistake).  An
``async def`` listener runs as a task of the running loop (Node runs an async function's body
too; ``run_awaitable``, set by ``cluster.run``), its exception logged the same way.

``Life``: what Node's primary does when a worker's IPC channel closes (``disconnect``) and
when its process exits (``exit``): ``exited_after_disconnect`` (true when the primary asked:
``disconnect()`` or ``kill()``), ``state`` (``none``, ``online``, ``listening``,
``disconnected``, ``dead``), and the rule of ``cluster.workers``: a worker leaves it once it
has disconnected *and* exited, before the later of the two events is emitted
(lib/internal/cluster/primary.js).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sockserve.cluster")

# cluster.on(...) in the primary; a Worker's own events are the same without the worker
CLUSTER_EVENTS = ("setup", "fork", "online", "listening", "message", "disconnect", "exit")


class EventEmitter:
    # runs what an async listener returned: eventloop.run_soon, set by cluster.run (impure)
    run_awaitable: Callable[[Any, str], None] | None = None

    def __init__(self) -> None:
        self._listeners: dict[str, list[tuple[Callable[..., Any], bool]]] = {}

    def on(self, event: str, listener: Callable[..., Any]) -> EventEmitter:
        """Call ``listener(*args)`` on every ``event``; returns self (Node chains it)."""
        self._listeners.setdefault(event, []).append((listener, False))
        return self

    add_listener = on

    def once(self, event: str, listener: Callable[..., Any]) -> EventEmitter:
        """Call ``listener`` on the next ``event`` only."""
        self._listeners.setdefault(event, []).append((listener, True))
        return self

    def off(self, event: str, listener: Callable[..., Any]) -> EventEmitter:
        """Remove the last registration of ``listener`` for ``event`` (Node's order)."""
        entries = self._listeners.get(event, [])
        for i in range(len(entries) - 1, -1, -1):
            if entries[i][0] is listener:
                del entries[i]
                break
        return self

    remove_listener = off

    def listener_count(self, event: str) -> int:
        return len(self._listeners.get(event, ()))

    def emit(self, event: str, *args: Any) -> bool:
        """Run the listeners in registration order; True if there were any."""
        entries = list(self._listeners.get(event, ()))
        if not entries:
            return False
        self._listeners[event] = [e for e in self._listeners[event] if not e[1]]
        for listener, _ in entries:
            try:
                result = listener(*args)
            except Exception:
                log.exception("%r listener %r failed", event, listener)
                continue
            if hasattr(result, "__await__"):
                self._run_awaitable(result, f"{event!r} listener {listener!r}")
        return True

    @classmethod
    def _run_awaitable(cls, result: Any, what: str) -> None:
        if cls.run_awaitable is not None:
            cls.run_awaitable(result, what)
            return
        if hasattr(result, "close"):
            result.close()  # no loop to run it on: no "never awaited" warning, this line instead
        log.error("%s is async: emitted outside cluster.run(main), it did not run", what)


class Life:
    """One worker's Node-visible state in the primary (no I/O: the caller says what happened)."""

    def __init__(self) -> None:
        self.state = "none"
        self.exited_after_disconnect: bool | None = None  # None until it leaves
        self.asked = False  # disconnect() or kill() was called
        self.connected = True  # the channel is open
        self.dead = False

    def online(self) -> None:
        if self.state == "none":
            self.state = "online"

    def listening(self) -> None:
        if self.state in ("none", "online"):
            self.state = "listening"

    def ask(self) -> None:
        """The primary called disconnect() or kill()."""
        self.asked = True
        self.exited_after_disconnect = True

    def disconnected(self) -> bool:
        """The channel closed; True if the worker leaves ``cluster.workers`` now."""
        if not self.connected:
            return False
        self.connected = False
        self.exited_after_disconnect = self.asked
        if not self.dead:
            self.state = "disconnected"
        return self.dead

    def exited(self) -> bool:
        """The process exited; True if the worker leaves ``cluster.workers`` now."""
        self.dead = True
        self.exited_after_disconnect = self.asked
        self.state = "dead"
        return not self.connected
