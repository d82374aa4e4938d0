"""The event loop both master and workers run: uvloop when installed, else asyncio's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop (asyncio's without it), reporting no cancel as an error (``_report``)."""
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    loop.set_exception_handler(_report)
    return loop


def _report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: asyncio's, except for a CancelledError, which is how a
    task ends when it is cancelled, never an error.  Python 3.11's ``StreamReaderProtocol``
    calls ``task.exception()`` on a client handler's task in a done callback, which raises for
    a cancelled task (CPython 3.12 checks ``task.cancelled()`` first): each handler cancelled
    at a stop (``asyncio.run`` cancels what is left; a worker's drain, past its grace; a
    library worker whose ``main()`` raised), even before its first step, was logged as
    "Exception in callback" with a CancelledError traceback."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


async def cancelled_by(done: asyncio.Future[Any], awaitable: Awaitable[Any]) -> bool:
    """Await ``awaitable`` in this task (its first step at once, not in a task of its own);
    if ``done`` completes first, cancel it and return True (a library worker's ``main()``
    when the worker is disconnected: Node exits whatever the program still awaits).  False
    once ``awaitable`` finished first; its exception, or a cancel from elsewhere, propagates.
    A ``done`` callback already queued when ``awaitable`` finishes in the same step is stale
    and never cancels this task afterwards."""
    this, waiting = asyncio.current_task(), [True]
    assert this is not None
    cancel = lambda _: waiting[0] and this.cancel()  # noqa: E731
    done.add_done_callback(cancel)
    try:
        await awaitable
    except asyncio.CancelledError:
        if not done.done():
            raise
        return True
    finally:
        waiting[0] = False
        done.remove_done_callback(cancel)
    return False


_listening: set[asyncio.Future[Any]] = set()  # tasks of async listeners, held until they end


def run_soon(awaitable: Awaitable[Any], what: str) -> None:
    """Run what an ``async def`` event listener returned as a task of the running loop (Node
    runs an async listener's body; ``emit`` does not wait for it); its exception is logged as
    a listener's that raises (``sockserve.cluster``: "WHAT failed" and the traceback)."""
    task = asyncio.ensure_future(awaitable)
    _listening.add(task)

    def ended(done: asyncio.Future[Any]) -> None:
        _listening.discard(done)
        if not done.cancelled() and done.exception() is not None:
            logging.getLogger("sockserve.cluster").error("%s failed", what, exc_info=done.exception())

    task.add_done_callback(ended)
