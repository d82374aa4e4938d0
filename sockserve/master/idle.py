"""When a socket-activated master has been idle long enough to exit, pure (times passed in).

systemd-socket-proxyd's ``--exit-idle-time``: with no connection open and no new
connection or request for ``idle_time`` seconds, the service stops (exit 0) and
systemd, which keeps the listening socket, starts it again on the next
connection.  The master sees activity as counters that only grow (handed,
served, ...) and a count of connections open or waiting.
"""

from __future__ import annotations

from collections.abc import Hashable


class IdleClock:
    """``observe(now, activity, busy)`` → True once idle for ``idle_time`` s (0: never)."""

    def __init__(self, idle_time: float) -> None:
        self.idle_time = idle_time
        self.activity: Hashable = None
        self.since: float | None = None

    def observe(self, now: float, activity: Hashable, busy: int) -> bool:
        """``activity`` changes with every connection or request; ``busy``: open or waiting ones."""
        if busy:  # the quiet stretch starts at the first observation without a connection
            self.activity, self.since = activity, None
            return False
        if activity != self.activity or self.since is None:
            self.activity, self.since = activity, now
            return False
        return self.idle_time > 0 and now - self.since >= self.idle_time
