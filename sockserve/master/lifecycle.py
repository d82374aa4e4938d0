"""The master's lifecycle vocabulary, pure: phases, events in, actions out, and the table.

The supervisor core (supervisor.py) is driven by these events and answers with
these actions; the I/O shell (master.py, pool.py) turns signals, control
requests, worker messages, exits and loop timers into events, and carries the
actions out.  ``TABLE`` says, for each master phase and event, what happens and
which phases may follow: the lifecycle as data, like peer.py's worker table.
Times are seconds; timer names are tuples such as ``("respawn", 2, 0)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.Enum):
    STARTING = "starting"  # the first generation boots; READY=1 not sent yet
    RUNNING = "running"  # a generation serves (older ones may still drain)
    RELOADING = "reloading"  # a reload reads its config or boots its generation
    STOPPING = "stopping"  # STOPPING=1 sent: workers leave, then exit
    STOPPED = "stopped"  # Exit was emitted; every later event is ignored


# ---------------------------------------------------------------- events (shell -> core)
@dataclass(frozen=True)
class Start:
    """The shell is up (listeners, control socket): boot the first generation."""


@dataclass(frozen=True)
class Term:
    """SIGTERM: graceful stop.  ``hung``: workers silent for a while (killed first, so the
    connections in their rr window are re-handed to workers that still take connections)."""

    hung: tuple[int, ...] = ()


@dataclass(frozen=True)
class Int:
    """SIGINT or SIGQUIT: fast stop."""


@dataclass(frozen=True)
class Reload:
    """SIGHUP (``request`` None) or a control ``reload`` (its id, to answer that request)."""

    request: Any = None


@dataclass(frozen=True)
class ConfigRead:
    """Answer to ReadConfig: the new config, or the one-line reason it is bad."""

    attempt: int
    config: Any = None
    error: str | None = None


@dataclass(frozen=True)
class Ttin:
    """SIGTTIN: one worker more."""


@dataclass(frozen=True)
class Ttou:
    """SIGTTOU: one worker less (never below 1)."""


@dataclass(frozen=True)
class SpawnFailed:
    worker: int
    reason: str  # e.g. "[Errno 24] Too many open files"


@dataclass(frozen=True)
class Online:
    worker: int


@dataclass(frozen=True)
class Listening:
    """The worker listens on every listener."""

    worker: int


@dataclass(frozen=True)
class BootError:
    worker: int
    reason: str  # the worker's own words: the app does not load, lifespan startup failed


@dataclass(frozen=True)
class Exited:
    """The worker's process is gone (its channel read dry).  kind/code/text: process.classify_exit."""

    worker: int
    kind: str
    code: int
    text: str
    lived: float  # seconds since its spawn


@dataclass(frozen=True)
class Silent:
    """No message from a serving worker for ``worker_timeout`` of the master's running time."""

    worker: int
    why: str


@dataclass(frozen=True)
class Recycle:
    """Replace this worker, its successor first (recycling.py: max_requests, request_timeout,
    lifetime, rss)."""

    worker: int
    reason: str


@dataclass(frozen=True)
class QueueEmpty:
    """Every connection the master accepted is handed out (asked for while stopping)."""


@dataclass(frozen=True)
class Timer:
    name: tuple[Any, ...]


Event = (Start | Term | Int | Reload | ConfigRead | Ttin | Ttou | SpawnFailed | Online | Listening
         | BootError | Exited | Silent | Recycle | QueueEmpty | Timer)


# ---------------------------------------------------------------- actions (core -> shell)
@dataclass(frozen=True)
class Spawn:
    worker: int
    generation: int
    slot: int
    config: Any


@dataclass(frozen=True)
class Disconnect:
    worker: int


@dataclass(frozen=True)
class Kill:
    worker: int
    signal: str  # "SIGKILL", "SIGQUIT", "SIGTERM"
    reason: str = ""  # why the master stops it, for the exit's log line ("" a plain kill)


@dataclass(frozen=True)
class StartAccepting:
    pass


@dataclass(frozen=True)
class StopAccepting:
    pass


@dataclass(frozen=True)
class Promote:
    """``generation`` serves from now on: its config (policy included) is the one in effect."""

    generation: int
    config: Any


@dataclass(frozen=True)
class Notify:
    lines: tuple[str, ...]  # sd_notify lines; the shell adds MONOTONIC_USEC= to RELOADING=1


@dataclass(frozen=True)
class SetTimer:
    name: tuple[Any, ...]
    delay: float  # replaces a pending timer of the same name


@dataclass(frozen=True)
class CancelTimer:
    name: tuple[Any, ...]


@dataclass(frozen=True)
class ReadConfig:
    attempt: int  # answer with ConfigRead(attempt, ...)


@dataclass(frozen=True)
class ReloadResult:
    request: Any
    ok: bool
    message: str
    superseded: bool = False  # a stop answered it: the reload will not happen (not a failure)


@dataclass(frozen=True)
class Log:
    level: str  # "debug", "info", "warning", "error", "critical"
    event: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Exit:
    code: int


Action = (Spawn | Disconnect | Kill | StartAccepting | StopAccepting | Promote | Notify | SetTimer
          | CancelTimer | ReadConfig | ReloadResult | Log | Exit)


# ---------------------------------------------------------------- the table
P = Phase
LIVE = (P.STARTING, P.RUNNING, P.RELOADING)
WITH_WORKERS = (*LIVE, P.STOPPING)
_ALL = tuple(Phase)


def _rows(phases: tuple[Phase, ...], event: str, outcome: str,
          then: tuple[Phase, ...] = ()) -> dict[tuple[Phase, str], tuple[str, tuple[Phase, ...]]]:
    return {(phase, event): (outcome, (phase, *(p for p in then if p is not phase))) for phase in phases}


ENDS = (P.STOPPING, P.STOPPED)  # a stop begins, or its last worker left
# A listening worker (or a smaller size) completes a start or a reload; a start that completes
# may begin the reload queued during it; a failed reload may begin the next queued one.
COMPLETES = (P.RUNNING, P.RELOADING)
# (phase, event) -> (outcome: the core's handler, phases that may follow, the phase itself first).
# Total: a pair not listed is ("ignore", (phase,)).
TABLE: dict[tuple[Phase, str], tuple[str, tuple[Phase, ...]]] = {
    **_rows((P.STARTING,), "Start", "boot"),
    **_rows(LIVE, "Term", "stop_graceful", ENDS),
    **_rows(WITH_WORKERS, "Int", "stop_fast", ENDS),
    **_rows((P.STARTING, P.RELOADING), "Reload", "queue_reload"),
    **_rows((P.RUNNING,), "Reload", "begin_reload", (P.RELOADING,)),
    **_rows((P.STOPPING, P.STOPPED), "Reload", "refuse_reload"),
    **_rows((P.RELOADING,), "ConfigRead", "config_read", (P.RUNNING,)),
    **_rows(LIVE, "Ttin", "grow"),
    **_rows((P.RUNNING,), "Ttou", "shrink"),
    **_rows((P.STARTING, P.RELOADING), "Ttou", "shrink", COMPLETES),
    **_rows(WITH_WORKERS, "Online", "worker_online"),
    **_rows((P.RUNNING, P.STOPPING), "Listening", "worker_listening"),
    **_rows((P.STARTING, P.RELOADING), "Listening", "worker_listening", COMPLETES),
    **_rows(WITH_WORKERS, "BootError", "worker_boot_error"),
    # an exit or a failed spawn: a boot failure ends a start or fails a reload (the next queued
    # one may begin); the last exit ends a stop
    **_rows((P.STARTING,), "Exited", "worker_gone", ENDS),
    **_rows((P.RUNNING,), "Exited", "worker_gone"),
    **_rows((P.RELOADING,), "Exited", "worker_gone", (P.RUNNING,)),
    **_rows((P.STOPPING,), "Exited", "worker_gone", ENDS),
    **_rows((P.STARTING,), "SpawnFailed", "worker_gone", ENDS),
    **_rows((P.RUNNING,), "SpawnFailed", "worker_gone"),
    **_rows((P.RELOADING,), "SpawnFailed", "worker_gone", (P.RUNNING,)),
    **_rows((P.STOPPING,), "SpawnFailed", "worker_gone", ENDS),
    **_rows(WITH_WORKERS, "Silent", "worker_silent"),
    # recycling (issue 13) only while running: a reload replaces every worker anyway
    **_rows((P.RUNNING,), "Recycle", "recycle"),
    **_rows((P.STOPPING,), "QueueEmpty", "handed_out", ENDS),
    # boot_timeout ends a start or fails a reload, "unserved" (no worker listens) stops, the stop
    # timers end a stop; back-off, drain and per-worker boot timers change no phase
    **_rows((P.STARTING,), "Timer", "timer", ENDS),
    **_rows((P.RUNNING,), "Timer", "timer", ENDS),
    **_rows((P.RELOADING,), "Timer", "timer", (P.RUNNING, *ENDS)),
    **_rows((P.STOPPING,), "Timer", "timer", ENDS),
}
EVENTS = ("Start", "Term", "Int", "Reload", "ConfigRead", "Ttin", "Ttou", "SpawnFailed", "Online",
          "Listening", "BootError", "Exited", "Silent", "QueueEmpty", "Timer")


def outcome(phase: Phase, event: str) -> tuple[str, tuple[Phase, ...]]:
    """What ``event`` does in ``phase``: (handler name, phases that may follow)."""
    return TABLE.get((phase, event), ("ignore", (phase,)))
