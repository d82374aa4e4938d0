"""One coarse timer per worker that checks every connection's deadlines (worker/limits.py).

A keep-alive request would otherwise create and cancel a loop timer (``headers_timeout``)
each time.  Node checks ``headersTimeout`` the same way: ``checkConnections`` runs every
``connectionsCheckingInterval`` (30 s by default; its own tests use a headers timeout / 8)
over the server's connection list, and nginx walks a timer tree once per event-loop turn.
Here the sweep runs every ``interval(limits)`` seconds while a connection is watched, and
stops when none is: an idle worker is not woken.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("sockserve.worker")

MAX_INTERVAL = 1.0  # seconds between sweeps, at most
MIN_INTERVAL = 0.01  # and at least (a timeout of a few ms is checked every 10 ms)


def interval(*timeouts: float) -> float:
    """Seconds between sweeps: an eighth of the shortest timeout (Node's tests), 10 ms to 1 s."""
    return max(MIN_INTERVAL, min(MAX_INTERVAL, *(t / 8 for t in timeouts)))


class Sweep:
    """Calls ``conn.check(now)`` on every watched connection each ``every`` seconds.

    ``check`` returns False when the connection needs no more watching (closed, handed
    over, refused); it may close the connection.  ``now`` is ``loop.time()``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        self.loop, self.every = loop, every
        self.watched: set[Any] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, conn: Any) -> None:
        self.watched.add(conn)
        if self._timer is None:
            self._timer = self.loop.call_later(self.every, self._sweep)

    def forget(self, conn: Any) -> None:
        self.watched.discard(conn)

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in list(self.watched):
            try:
                watching = conn.check(now)
            except Exception:  # a uvicorn/h11 we do not know: that connection goes unwatched
                log.exception("HTTP limits: cannot check a connection's deadlines")
                watching = False
            if not watching:
                self.watched.discard(conn)
        self._timer = self.loop.call_later(self.every, self._sweep) if self.watched else None
