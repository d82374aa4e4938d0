"""Master-side events, like Node's ``cluster.on(...)``: fork, online, listening,
disconnect, exit, message.  A listener that raises is logged, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

EVENTS = ("fork", "online", "listening", "disconnect", "exit", "message")
log = logging.getLogger("sockserve.master")


class Emitter:
    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; events are {', '.join(EVENTS)}")
        self._listeners[event].append(callback)

    def emit(self, event: str, *args: Any) -> None:
        for callback in self._listeners[event]:
            try:
                callback(*args)
            except Exception:
                log.exception("%s listener %r failed", event, callback)
