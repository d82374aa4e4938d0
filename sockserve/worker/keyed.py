"""Several apps in one worker, one per listener (``sockserve.listen`` called more than once).

``Keyed`` looks like one adapter to the runtime and the drain (open/served counts, tasks,
transports, begin_drain, close_idle, busy, shutdown: over every app), and ``pick(sock)``
gives the adapter of the listener a connection came through, by the socket's local address
(the rr hand-off and the shared accept deliver bare sockets; the address says which server
they belong to, as the port does in Node's ``handles`` map).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any


class Keyed:
    interface = "keyed"
    ssl = None  # each listener's adapter brings its own (pick)

    def __init__(self) -> None:
        self.adapters: dict[str, Any] = {}
        self._where: dict[str, tuple[str, int] | str] = {}  # key -> (host, port) or unix path

    def add(self, key: str, adapter: Any) -> None:
        self.adapters[key] = adapter

    def remove(self, key: str) -> Any:
        self._where.pop(key, None)
        return self.adapters.pop(key, None)

    def located(self, key: str, address: str) -> None:
        """``key`` listens on ``address`` (the printable address of the ServerReply)."""
        if address.startswith("unix:"):
            self._where[key] = address[5:]
        else:
            host, _, port = address.rpartition(":")
            self._where[key] = (host.strip("[]"), int(port))

    def pick(self, sock: socket.socket) -> Any:
        """The adapter serving the listener ``sock`` was accepted from."""
        try:
            local = sock.getsockname()
        except OSError:
            local = None
        fallback = None
        for key, where in self._where.items():
            if isinstance(local, tuple) and isinstance(where, tuple):
                if where == tuple(local[:2]):
                    return self.adapters[key]
                if where[1] == local[1] and where[0] in ("0.0.0.0", "::", ""):
                    fallback = fallback or self.adapters[key]
            elif where == local:
                return self.adapters[key]
        return fallback or next(iter(self.adapters.values()))

    # ------------------------------------------------------------ one adapter, to the runtime
    @property
    def open(self) -> int:
        return sum(a.open for a in self.adapters.values())

    @property
    def served(self) -> int:
        return sum(a.served for a in self.adapters.values())

    @property
    def idle_grace(self) -> float:
        return max((a.idle_grace for a in self.adapters.values()), default=0.0)

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        return set().union(*(a.tasks for a in self.adapters.values()))

    def transports(self) -> list[asyncio.BaseTransport]:
        return [t for a in self.adapters.values() for t in a.transports()]

    def busy(self) -> bool:
        return any(a.busy() for a in self.adapters.values())

    def begin_drain(self) -> None:
        for adapter in self.adapters.values():
            adapter.begin_drain()

    def close_idle(self) -> None:
        for adapter in self.adapters.values():
            adapter.close_idle()

    async def startup(self) -> None:
        """Each app starts in its own ``listen()``, before its QueryServer."""

    async def shutdown(self) -> None:
        for adapter in self.adapters.values():
            await adapter.shutdown()
