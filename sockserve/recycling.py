"""When a worker is due for recycling, pure (counts, ages and samples are passed in).

Both sides read it: a worker counts its own requests (gunicorn's ``max_requests``
with ``max_requests_jitter``: the limit is ``N + randint(0, J)``, drawn once per
worker so they do not all leave together); the master judges age
(``max_worker_lifetime`` + jitter, like Granian's ``workers-lifetime``) and RSS
(``max_worker_rss`` MiB, over the limit on ``RSS_SAMPLES`` samples in a row, so a
short peak does not count; uWSGI's ``reload-on-rss`` and Granian's
``workers-max-rss`` judge RSS too).  A due worker is replaced the way a reload
replaces one: its successor listens before it is disconnected.
"""

from __future__ import annotations

REASONS = ("max_requests", "lifetime", "rss", "request_timeout", "fd_pressure")
RSS_SAMPLES = 3  # consecutive samples over max_worker_rss before a recycle
RSS_INTERVAL = 1.0  # seconds between RSS samples of one worker
MIB = 1024 * 1024


def requests_limit(base: int, jitter: int, draw: float) -> int:
    """``base + randint(0, jitter)`` with ``draw`` uniform in [0, 1); 0 (off) when ``base`` is 0."""
    if base <= 0:
        return 0
    return base + min(jitter, int(draw * (jitter + 1)))


def lifetime_limit(base: float, jitter: float, draw: float) -> float:
    """Seconds this worker may live: ``base + jitter * draw``; 0 (off) when ``base`` is 0."""
    return base + jitter * draw if base > 0 else 0.0


def requests_due(served: int, limit: int) -> bool:
    return limit > 0 and served >= limit


def lifetime_due(age: float, limit: float) -> bool:
    return limit > 0 and age >= limit


class RssWatch:
    """Counts consecutive RSS samples over ``limit_mib``; ``sample(bytes)`` → due or not."""

    def __init__(self, limit_mib: float, samples: int = RSS_SAMPLES) -> None:
        self.limit = limit_mib * MIB
        self.samples = samples
        self.over = 0
        self.last = 0

    def sample(self, rss: int) -> bool:
        self.last = rss
        self.over = self.over + 1 if self.limit > 0 and rss > self.limit else 0
        return self.limit > 0 and self.over >= self.samples
