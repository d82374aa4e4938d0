"""Graceful drain of a worker's connections (Node's ``worker.disconnect()``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("sockserve.worker")

POLL = 0.05  # seconds between checks for open connections


class Drainable(Protocol):
    open: int

    def begin_drain(self) -> None: ...

    def busy(self) -> bool: ...

    async def shutdown(self) -> None: ...


async def drain(adapter: Drainable, timeout: float) -> int:
    """Let open connections finish within ``timeout`` seconds, then shut the app down.

    Idle keep-alive connections are closed at once and in-flight requests end
    with ``Connection: close``.  Returns how many connections were still open
    when time ran out (0 after a clean drain).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    adapter.begin_drain()
    while adapter.busy() and loop.time() < deadline:
        await asyncio.sleep(POLL)
    left = adapter.open
    try:  # the ASGI lifespan shutdown gets what is left of the time, at least a second
        await asyncio.wait_for(adapter.shutdown(), max(1.0, deadline - loop.time()))
    except TimeoutError:
        log.warning("the application's lifespan shutdown did not finish in time")
    except Exception:
        log.exception("the application's lifespan shutdown failed")
    return left
