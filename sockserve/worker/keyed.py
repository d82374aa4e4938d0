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
        self._distinct: list[Any] = []  # each adapter once (the service: one app on every key)
        self._started: set[int] = set()  # id() of the adapters whose startup ran

    def add(self, key: str, adapter: Any, started: bool = False) -> bool:
        """Serve ``key`` with ``adapter``; True if this adapter is new here."""
        self.adapters[key] = adapter
        if started:
            self._started.add(id(adapter))
        new = all(a is not adapter for a in self._distinct)
        if new:
            self._distinct.append(adapter)
        return new

    def remove(self, key: str) -> Any:
        self._where.pop(key, None)
        adapter = self.adapters.pop(key, None)
        if all(a is not adapter for a in self.adapters.values()):
            self._distinct = [a for a in self._distinct if a is not adapter]
        return adapter

    def located(self, key: str, address: str) -> None:
        """``key`` listens on ``address`` (the printable address of the ServerReply)."""
        host, _, port = address.rpartition(":")
        if address.startswith("unix:"):
            self._where[key] = address[5:]
        elif port.isdigit():
            self._where[key] = (host.strip("[]"), int(port))

    def pick(self, sock: socket.socket) -> Any:
        """The adapter serving the listener ``sock`` was accepted from."""
        if len(self._distinct) == 1:  # the service's case: no syscall on its hot path
            return self._distinct[0]
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
        return fallback or self._distinct[0]

    # ------------------------------------------------------------ one adapter, to the runtime
    @property
    def open(self) -> int:
        if len(self._distinct) == 1:  # read per hand-off: no generator for the service's one app
            return self._distinct[0].open
        return sum(a.open for a in self._distinct)

    @property
    def served(self) -> int:
        return sum(a.served for a in self._distinct)

    @property
    def idle_grace(self) -> float:
        return max((a.idle_grace for a in self._distinct), default=0.0)

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        return set().union(*(a.tasks for a in self._distinct))

    def transports(self) -> list[asyncio.BaseTransport]:
        return [t for a in self._distinct for t in a.transports()]

    def busy(self) -> bool:
        return any(a.busy() for a in self._distinct)

    def begin_drain(self) -> None:
        for adapter in self._distinct:
            adapter.begin_drain()

    def close_idle(self) -> None:
        for adapter in self._distinct:
            adapter.close_idle()

    async def startup(self) -> None:
        """The ASGI lifespan startup of each app not started yet (raises AppStartupError)."""
        for adapter in list(self._distinct):
            if id(adapter) not in self._started:
                self._started.add(id(adapter))
                await adapter.startup()

    async def shutdown(self) -> None:
        for adapter in self._distinct:
            await adapter.shutdown()
