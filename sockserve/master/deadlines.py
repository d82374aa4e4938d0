"""When the master gives up on a worker, pure (times are passed in).

A booting worker gets ``boot_timeout`` to listen, a serving one must send
something (a heartbeat at least) every ``worker_timeout`` (gunicorn's worker
timeout), and a disconnecting one gets ``graceful_timeout`` to drain plus its shutdown budget
(``Config.drain_kill_after``).
"""

from __future__ import annotations

from ..cluster.peer import WorkerState
from ..config import Config


def overdue(state: WorkerState, *, started: float, last_seen: float, disconnect_at: float | None,
            now: float, config: Config) -> str | None:
    """Why the worker must be killed at ``now``, or None."""
    if disconnect_at is not None:
        if now - disconnect_at > config.drain_kill_after():  # the worker's own deadline is earlier
            return (f"still running {config.drain_kill_after():g}s after disconnect "
                    f"(graceful_timeout {config.graceful_timeout:g}s + shutdown budget)")
        return None
    if state in (WorkerState.NONE, WorkerState.ONLINE):
        if now - started > config.boot_timeout:
            return f"not listening after boot_timeout ({config.boot_timeout:g}s)"
        return None
    if now - last_seen > config.worker_timeout:
        return f"silent for {now - last_seen:.1f}s (worker_timeout {config.worker_timeout:g}s)"
    return None
