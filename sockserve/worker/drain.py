"""Graceful drain of a worker's connections (Node's ``worker.disconnect()``), then the stop.

The shape is uvicorn's ``Server.shutdown``: stop taking connections, let the open ones finish
within ``graceful_timeout``, cancel what is left, run the ASGI lifespan shutdown.  Two
departures: before cancelling tasks, the connections are closed, so an app waiting in
``receive()`` gets ``http.disconnect`` (and a stream handler sees its connection end) like
when a client leaves; and the cancel plus the lifespan shutdown get a budget of their own
(``shutdown_budget``), so the worker exits by itself before the master's SIGKILL
(``Config.drain_kill_after``).  A fast stop (SIGQUIT) skips the wait and cancels at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ..config import SHUTDOWN_BUDGET

log = logging.getLogger("sockserve.worker")

POLL = 0.05  # seconds between checks for open connections
CANCEL_GRACE = 0.5  # seconds apps get to leave after their connection closed, before cancel


class Drainable(Protocol):
    open: int
    idle_grace: float  # seconds an idle connection may still bring one last request

    def begin_drain(self) -> None: ...

    def close_idle(self) -> None: ...

    tasks: set[asyncio.Task[Any]]  # the app's running requests (handlers)

    def transports(self) -> list[asyncio.BaseTransport]: ...

    def busy(self) -> bool: ...

    async def shutdown(self) -> None: ...


async def drain(adapter: Drainable, timeout: float, budget: float = SHUTDOWN_BUDGET,
                hurry: asyncio.Event | None = None) -> int:
    """Let open connections finish within ``timeout`` seconds, then stop (see ``stop``).

    Every response from now on ends its connection (``Connection: close``);
    connections with no request in flight get ``adapter.idle_grace`` for a last one,
    then close.  ``hurry`` set (a fast stop) ends the wait at once.  Returns how many
    connections were still open when the wait ended (0 after a clean drain).
    """
    loop = asyncio.get_running_loop()
    hurry = hurry or asyncio.Event()
    deadline = loop.time() + timeout
    adapter.begin_drain()
    idle_until: float | None = loop.time() + min(adapter.idle_grace, timeout)
    while adapter.busy() and loop.time() < deadline and not hurry.is_set():
        if idle_until is not None and loop.time() >= idle_until:
            adapter.close_idle()
            idle_until = None
        await asyncio.sleep(POLL)
    left = adapter.open
    if left:
        when = "at a fast stop" if hurry.is_set() else f"after {timeout:g}s (graceful_timeout)"
        log.warning("%d connections still open %s: closing them", left, when,
                    extra={"SOCKSERVE_EVENT": "drain_timeout"})
    # the lifespan shutdown may use what is left of graceful_timeout, plus the budget
    end = (loop.time() if hurry.is_set() else max(deadline, loop.time())) + budget
    await stop(adapter, end)
    return left


async def stop(adapter: Drainable, end: float) -> None:
    """Cancel what still runs, then the lifespan shutdown; all done by loop time ``end``.

    Connections are closed first (``http.disconnect`` for an app in ``receive()``); after
    ``CANCEL_GRACE`` what remains is aborted and its tasks cancelled, as uvicorn does at
    ``timeout_graceful_shutdown``.
    """
    loop = asyncio.get_running_loop()
    if adapter.busy():
        for transport in adapter.transports():
            transport.close()
        await _settle(adapter, min(CANCEL_GRACE, (end - loop.time()) / 4))
    if adapter.busy():  # still running: reset what is left, cancel the tasks that ignored it
        for transport in adapter.transports():
            transport.abort()
        running = [task for task in adapter.tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            log.warning("cancelled %d request(s) still running at the stop", len(running))
        await _settle(adapter, min(CANCEL_GRACE, (end - loop.time()) / 4))
    try:  # at least a second for the lifespan shutdown, even when the cancel took its time
        await asyncio.wait_for(adapter.shutdown(), max(1.0, end - loop.time()))
    except TimeoutError:
        log.warning("the application's lifespan shutdown did not finish in time")
    except Exception:
        log.exception("the application's lifespan shutdown failed")


async def _settle(adapter: Drainable, seconds: float) -> None:
    """Wait up to ``seconds`` for the connections and tasks to end."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while adapter.busy() and loop.time() < until:
        await asyncio.sleep(POLL / 5)
