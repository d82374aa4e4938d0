"""Stream handlers: ``async def handle(reader, writer)`` served on asyncio's streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sockserve.worker")


class _StreamProtocol(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol that reports connections to its adapter."""

    def __init__(self, adapter: StreamAdapter) -> None:
        self._adapter = adapter
        reader = asyncio.StreamReader(loop=adapter.loop)
        super().__init__(reader, adapter.run_handler, loop=adapter.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._adapter.open += 1
        self._adapter.live[self] = transport
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._adapter.open -= 1
        self._adapter.live.pop(self, None)
        self._adapter.served += 1
        super().connection_lost(exc)


class StreamAdapter:
    """``async def handle(reader, writer)``; the connection closes when it returns."""

    interface = "stream"
    idle_grace = 0.0  # a stream connection is the handler's until it returns

    def __init__(self, handler: Callable[..., Any], loop: asyncio.AbstractEventLoop,
                 ssl: Any = None) -> None:
        self.handler = handler
        self.loop = loop
        self.ssl = ssl  # an ssl.SSLContext: the handler reads and writes plain text over TLS
        self.open = 0
        self.served = 0
        self.live: dict[_StreamProtocol, asyncio.BaseTransport] = {}
        self.tasks: set[asyncio.Task[Any]] = set()  # handlers running (drain.stop cancels them)

    def protocol_factory(self) -> asyncio.Protocol:
        return _StreamProtocol(self)

    def transports(self) -> list[asyncio.BaseTransport]:
        return list(self.live.values())

    async def run_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(task := asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer)
        except Exception:
            log.exception("stream handler failed", extra={"SOCKSERVE_EVENT": "app_error"})
        finally:
            self.tasks.discard(task)  # type: ignore[arg-type]
            writer.close()

    async def startup(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    def begin_drain(self) -> None:
        """Nothing to tell a stream handler: open connections end when it returns."""

    def close_idle(self) -> None:
        """A stream connection is the handler's until it returns."""

    def busy(self) -> bool:
        return self.open > 0 or bool(self.tasks)
