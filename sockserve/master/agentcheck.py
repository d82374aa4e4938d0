"""HAProxy's agent-check answer, pure: the master's state in, one line out (agent.py serves it).

HAProxy's ``server ... agent-check agent-port P agent-inter 200ms`` connects to the
agent every ``agent-inter``, reads one line and applies each word of it (words are
separated by spaces, tabs or commas; HAProxy's configuration manual, "agent-check"):
``ready`` / ``drain`` / ``maint`` set the server's administrative state, ``up`` /
``down`` its operational state (only the agent's own ``up`` undoes its ``down``), and
``N%`` its weight as a share of the weight configured in haproxy.cfg.

What the master answers (``answer``):

- ``maint``: stopping (the listeners are closed or about to be) or stopped.
- ``up drain``: a graceful stop's ``drain_delay`` runs (it still serves, send nothing
  new), or a generation boots (the start, a reload) while a worker listens: keep what
  is open, send new connections elsewhere until the new generation serves.
- ``down#no-listening-worker``: no worker of the serving generation listens (the text after
  ``#`` is the reason HAProxy shows; a space would end it).
- ``up ready N%``: serving; ``N`` (1..100) is the free capacity (``weight``).
"""

from __future__ import annotations

from dataclasses import dataclass

WORKER_CONNECTIONS = 1000  # connections one worker counts as full without limit_concurrency
# (gunicorn's worker_connections default)


@dataclass(frozen=True)
class Load:
    """What the master knows of its serving generation, in counts.

    ``listening``: its workers that listen; ``size``: the workers it should have;
    ``open``: connections open in the listening ones (their last heartbeats);
    ``room``: rr hand-offs their windows can still take (``policy.capacity()``: each
    worker's free window slots counted once, whatever keys' rotations it is in, less what
    is queued), ``None`` under shared/reuseport (the kernel hands out);
    ``window``: ``rr_window``; ``per_worker``: connections a worker counts full at
    (``limit_concurrency``, else ``WORKER_CONNECTIONS``).
    """

    listening: int
    size: int
    open: int = 0
    room: int | None = None
    window: int = 8
    per_worker: int = WORKER_CONNECTIONS


def weight(load: Load) -> int:
    """The free capacity in percent, 1..100 (0 only with no listening worker).

    ``listening / size × min(room / (listening × window), 1 − open / (listening ×
    per_worker))``: the share of the configured workers that listen, times the
    scarcer of the rr windows' free room (1 under shared/reuseport) and the
    connection slots left.  Never below 1 while a worker listens: a host at 0% is
    drained by HAProxy, and a full cluster would then refuse everything.
    """
    if load.listening <= 0:
        return 0
    size = max(load.size, load.listening)
    room = 1.0 if load.room is None else load.room / (load.listening * max(1, load.window))
    slots = 1.0 - load.open / (load.listening * max(1, load.per_worker))
    free = load.listening / size * max(0.0, min(1.0, room, slots))
    return max(1, min(100, round(100 * free)))


def answer(state: str, draining: bool, load: Load) -> str:
    """The agent's line for the master's phase ``state`` (lifecycle.Phase values: starting,
    running, reloading, stopping, stopped); ``draining``: a stop's ``drain_delay`` runs."""
    if state == "stopping" and draining:
        return "up drain"
    if state in ("stopping", "stopped"):
        return "maint"
    if load.listening <= 0:
        return "down#no-listening-worker"
    if state in ("starting", "reloading"):
        return "up drain"
    return f"up ready {weight(load)}%"
