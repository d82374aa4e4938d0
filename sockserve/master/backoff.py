"""Restart back-off per worker slot, pure (times are passed in).

A slot whose worker crashes waits 0.1 s, 0.2 s, 0.4 s … up to ``maximum``
before the next spawn; a worker that stayed up ``stable_after`` seconds
resets its slot.  Like gunicorn's and systemd's restart throttling, so a
crashing app costs a bounded amount of CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_DELAY = 0.1


@dataclass
class Backoff:
    maximum: float = 30.0
    stable_after: float = 10.0
    failures: int = 0

    def exited(self, lived: float, crashed: bool) -> float:
        """Record an exit after ``lived`` seconds; the delay before the next spawn."""
        if lived >= self.stable_after or not crashed:
            self.failures = 0
        if not crashed:
            return 0.0
        delay = min(self.maximum, BASE_DELAY * 2 ** min(self.failures, 30))
        self.failures += 1
        return delay
