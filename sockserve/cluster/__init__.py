"""``sockserve.cluster``: Node's ``cluster`` module for Python programs (docs/node-cluster.md).

    from sockserve import cluster
    if cluster.is_primary: cluster.fork() ...            # in async def main()
    else: await sockserve.listen(app, port=8000)
    cluster.run(main)

Like Node's lib/cluster.js, the process's side is chosen by its environment:
``SOCKSERVE_WORKER_ID`` set (by ``fork()``, Node's ``NODE_UNIQUE_ID``) is a worker
(worker/child.py), else the primary (master/primary.py).  Importing this starts nothing;
a side's module is imported the first time one of its names is used.

The wire both sides share lives here too: ``protocol`` (messages and codec, pure), ``peer``
(the worker state table, pure), ``handles`` (Node's handles map, pure), ``events`` (Node's
EventEmitter and event order, pure), ``channel`` (the only sendmsg/recvmsg: SOCK_SEQPACKET
with SCM_RIGHTS).  Those import neither side; this facade reaches a side only lazily.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

SCHED_NONE, SCHED_RR = 1, 2  # Node's values: leave it to the kernel / the primary distributes
is_worker = "SOCKSERVE_WORKER_ID" in os.environ
is_primary = not is_worker
# The primary's names, as Node's lib/internal/cluster/child.js leaves them in a worker (the
# whole script runs in every process, so a Node program touches them at top level there):
# its data is undefined there (None here; an assignment is kept and has no effect); its
# methods do not exist (AttributeError, Node's "is not a function"); the cluster object is an
# EventEmitter in both (on/once/emit work in a worker; sockserve emits nothing on it there).
_PRIMARY_DATA = {"workers", "settings"}
_PRIMARY_METHODS = {"fork", "setup_primary", "setup_master", "disconnect"}
_EMITTER_NAMES = {"on", "once", "off", "add_listener", "remove_listener", "listener_count", "emit"}
_WORKER_NAMES = {"worker"}
_side: list[Any] = []
_in_worker: dict[str, Any] = {"scheduling_policy": None}  # what a worker's program assigned


def side() -> Any:
    """This process's cluster object: the Primary, or the module of the worker side."""
    if not _side:
        if is_worker:
            _side.append(importlib.import_module("sockserve.worker.child"))
        else:
            _side.append(importlib.import_module("sockserve.master.primary").Primary())
    return _side[0]


def run(main: Any) -> None:
    """Run the program: ``main()`` (a function or a coroutine function) in this process's
    event loop (uvloop when installed), then, in a worker, serve until disconnected; in the
    primary, until no worker is left and nothing else runs.  Exits the process with its code."""
    import logging

    from ..eventloop import new_event_loop, run_soon
    from .events import EventEmitter

    EventEmitter.run_awaitable = staticmethod(run_soon)  # async def listeners run (Node's do)

    if not logging.getLogger().handlers:  # the service's logs: quiet unless the program logs
        for side_name in ("sockserve.master", "sockserve.worker"):
            logging.getLogger(side_name).addHandler(logging.NullHandler())
    here = side()
    if is_worker:
        import asyncio

        with asyncio.Runner(loop_factory=here.worker_loop) as runner:  # cluster.worker's loop
            code = runner.run(here.run_worker(main))
        sys.stdout.flush()
        logging.shutdown()
        os._exit(code)  # no waiting for app threads (WSGI pool) after the drain, as the service
    import asyncio

    primary = importlib.import_module("sockserve.master.primary")
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        code = runner.run(primary.run_primary(here, main))
    sys.stdout.flush()
    raise SystemExit(code)


class _ClusterModule(types.ModuleType):
    """Module attributes that live on this process's side (``cluster.workers``,
    ``cluster.scheduling_policy = cluster.SCHED_NONE`` before the first fork, ...)."""

    @property
    def scheduling_policy(self) -> int | None:
        """The primary's (master/primary.py); in a worker what was assigned (None), no effect."""
        return _in_worker["scheduling_policy"] if is_worker else side().scheduling_policy

    @scheduling_policy.setter
    def scheduling_policy(self, value: int) -> None:
        if is_worker:
            _in_worker["scheduling_policy"] = value  # Node: a plain property, no effect in a worker
        else:
            side().scheduling_policy = value

    def __getattr__(self, name: str) -> Any:
        if is_primary and name in _PRIMARY_DATA | _PRIMARY_METHODS | _EMITTER_NAMES:
            return getattr(side(), name)
        if is_worker and name in _EMITTER_NAMES:
            return getattr(_worker_emitter(), name)
        if is_worker and name in _PRIMARY_DATA:
            return None  # Node: undefined in a worker
        if is_worker and name in _PRIMARY_METHODS:
            raise AttributeError(f"cluster.{name}() exists in the primary only "
                                 "(as in Node; test cluster.is_primary first)")
        if name in _WORKER_NAMES:
            if is_primary:
                return None  # Node: cluster.worker is not set in the primary
            return importlib.import_module("sockserve.worker.child").this_worker()
        raise AttributeError(f"module 'sockserve.cluster' has no attribute {name!r}")


def _worker_emitter() -> Any:
    """The cluster object's EventEmitter in a worker (Node's child.js: ``new EventEmitter()``)."""
    if "emitter" not in _in_worker:
        _in_worker["emitter"] = importlib.import_module("sockserve.cluster.events").EventEmitter()
    return _in_worker["emitter"]


sys.modules[__name__].__class__ = _ClusterModule
