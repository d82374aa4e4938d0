"""The worker's guards (issue 13): request timeout and its own request count.

``install(worker, adapter)`` reads ``request_timeout``, ``max_requests`` and
``max_requests_jitter`` from the worker's config (config.guards_for_worker):
the app gets ``timeouts.RequestTimeout`` around it, and a counter asks the
master to recycle this worker (``Recycle("max_requests")``) once it served
``max_requests + randint(0, max_requests_jitter)`` requests, like gunicorn's
workers; it serves on until the master disconnects it (its successor listens
first).  A stuck WSGI request asks for ``Recycle("request_timeout")``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from .. import recycling
from .timeouts import RequestTimeout, stream_timeout

COUNT_INTERVAL = 0.05  # seconds between looks at the served counter
ASK_AGAIN = 5.0  # seconds between Recycle requests until the master disconnects us (it may be
#                  busy with a reload, or the successor it started may have failed to boot)


def install(worker: Any, adapter: Any) -> None:
    """The guards around ``adapter`` (each app of an ``AppSet``); the count over all of them."""
    config = worker.config
    timeout = float(config.get("request_timeout") or 0)
    for one in getattr(adapter, "adapters", (adapter,)) if timeout > 0 else ():
        _timeout(worker, one, timeout)
    limit = recycling.requests_limit(int(config.get("max_requests") or 0),
                                     int(config.get("max_requests_jitter") or 0), random.random())
    if limit:
        worker.loop.create_task(_count(worker, adapter, limit))


def _timeout(worker: Any, adapter: Any, timeout: float) -> None:
    if adapter.interface == "stream":
        adapter.handler = stream_timeout(adapter.handler, timeout)
    else:  # uvicorn's protocols call config.loaded_app for every request
        app = adapter.config.loaded_app
        adapter.config.loaded_app = RequestTimeout(app, timeout, cancellable=not runs_wsgi(app),
                                                   on_stuck=lambda path: worker.recycle("request_timeout"))


def runs_wsgi(app: Any) -> bool:
    """True when a WSGI adapter (a2wsgi's or uvicorn's) is in ``app``'s chain of ``.app``s."""
    for _ in range(16):
        if type(app).__module__.startswith(("a2wsgi", "uvicorn.middleware.wsgi")):
            return True
        app = getattr(app, "app", None)
        if app is None:
            return False
    return False


async def _count(worker: Any, adapter: Any, limit: int) -> None:
    while not recycling.requests_due(adapter.served, limit):
        await asyncio.sleep(COUNT_INTERVAL)
    worker.event("max_requests", "worker %d served %d requests (max_requests %d): asking to be recycled",
                 worker.id, adapter.served, limit)
    while not worker.disconnecting:
        worker.recycle("max_requests")
        await asyncio.sleep(ASK_AGAIN)
