"""The fd limit (RLIMIT_NOFILE, ``ulimit -n``, systemd's ``LimitNOFILE=``): what sockserve needs.

The master checks at start that its soft limit leaves room for its own fds, its
workers' channels (twice, during a reload) and the rr hand-offs in flight; a worker
measures how close it is to its own limit (fd pressure, see worker/limits.py).
Linux only: open fds are counted in ``/proc/self/fd``.
"""

from __future__ import annotations

import os
import resource

from .config import Config, ConfigError

BASE_FDS = 32  # stdio, epoll, signal pipes, journald, sd_notify, control socket, slack
PER_WORKER = 4  # channel + pidfd, twice while a reload runs two generations
WORKER_FDS = 64  # a worker: ~24 of its own, 32 free to take connections (fdpressure.RESUME_AT), a few


def soft_limit() -> int:
    """The soft RLIMIT_NOFILE of this process (read each time: ``prlimit`` may change it)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except OSError:  # a seccomp filter denying prlimit64: unknown, assume room
        return 1 << 20
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def open_fds() -> int:
    """How many fds this process holds now (not counting the one used to count them)."""
    return len(os.listdir("/proc/self/fd")) - 1


def needed(config: Config, listeners: int) -> int:
    """Fds the master needs for ``config`` with ``listeners`` listening sockets (each worker
    has its own table: it needs WORKER_FDS)."""
    window = config.rr_window if config.policy == "rr" else 0
    return BASE_FDS + listeners + config.workers * (PER_WORKER + window)


def check_startup(config: Config, listeners: int) -> None:
    """ConfigError naming the limit and the need when the soft limit is too low to start."""
    soft, need = soft_limit(), max(needed(config, listeners) + open_fds(), WORKER_FDS)
    if soft < need:
        raise ConfigError(f"RLIMIT_NOFILE (ulimit -n, LimitNOFILE=) is {soft}: sockserve needs at "
                          f"least {need} fds for {config.workers} workers and {listeners} listeners; "
                          "raise the limit or lower workers")
