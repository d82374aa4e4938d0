"""Graceful drain of a worker's connections (Node's ``worker.disconnect()``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("sockserve.worker")

POLL = 0.05  # seconds between checks for open connections


class Drainable(Protocol):
    open: int
    idle_grace: float  # seconds an idle connection may still bring one last request

    def begin_drain(self) -> None: ...

    def close_idle(self) -> None: ...

    def busy(self) -> bool: ...

    async def shutdown(self) -> None: ...


async def drain(adapter: Drainable, timeout: float) -> int:
    """Let open connections finish within ``timeout`` seconds, then shut the app down.

    Every response from now on ends its connection (``Connection: close``);
    connections with no request in flight get ``adapter.idle_grace`` for a last one,
    then close.  Returns how many connections were still open
    when time ran out (0 after a clean drain).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    adapter.begin_drain()
    idle_until = loop.time() + min(adapter.idle_grace, timeout)
    while adapter.busy() and loop.time() < deadline:
        if idle_until is not None and loop.time() >= idle_until:
            adapter.close_idle()
            idle_until = None
        await asyncio.sleep(POLL)
    left = adapter.open
    try:  # the ASGI lifespan shutdown gets what is left of the time, at least a second
        await asyncio.wait_for(adapter.shutdown(), max(1.0, deadline - loop.time()))
    except TimeoutError:
        log.warning("the application's lifespan shutdown did not finish in time")
    except Exception:
        log.exception("the application's lifespan shutdown failed")
    return left
