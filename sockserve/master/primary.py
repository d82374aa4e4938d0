"""``sockserve.cluster`` in the primary: Node's lib/internal/cluster/primary.js over the service's
pool, channel and hand-off (primary_pool.py).

``fork(env)`` starts the program again (``setup_primary(exec=, args=, cwd=, silent=)``, the
running script by default) with ``SOCKSERVE_WORKER_ID`` in its environment (Node's
``NODE_UNIQUE_ID``); events ``setup``, ``fork``, ``online``, ``listening``, ``message``,
``disconnect``, ``exit`` come in Node's order (cluster/events.py).  Nothing is respawned
unless the program forks again.  Everything runs in the loop of ``cluster.run(main)``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
from typing import Any

from ..cluster.events import EventEmitter
from ..cluster.handles import address_info, parse_key
from ..systemd import listen_fds, scrub_env
from .primary_pool import LibraryPool, close_inherited, new_pool
from .primary_worker import Unstarted, Worker
from .workers import WorkerHandle

SCHED_NONE, SCHED_RR = 1, 2  # Node's values
POLICY = {SCHED_RR: "rr", SCHED_NONE: "shared"}


def policy_from_env(environ: dict[str, str] | os._Environ[str]) -> int:
    """``SOCKSERVE_SCHED_POLICY`` (``rr`` / ``none``), as Node's ``NODE_CLUSTER_SCHED_POLICY``."""
    return SCHED_NONE if environ.get("SOCKSERVE_SCHED_POLICY") == "none" else SCHED_RR


class Primary(EventEmitter):
    """The cluster module's state in the primary process (one per process)."""

    def __init__(self) -> None:
        super().__init__()
        self.is_primary, self.is_worker = True, False
        self.worker = None
        self.workers: dict[int, Worker] = {}
        self.settings: dict[str, Any] = {}
        self._policy = policy_from_env(os.environ)
        self._frozen: int | None = None  # the policy in effect, from the first setup_primary()
        self._ids = 0
        self._pool: LibraryPool | None = None
        self._inherited: list[Any] | None = None
        self._all_gone: list[asyncio.Future[None]] = []
        self.stopping = False  # SIGTERM / SIGINT came: fork() starts nothing (primary_worker.Unstarted)

    @property
    def scheduling_policy(self) -> int:
        """What was last assigned (Node's plain property; the policy in effect is frozen by the
        first ``setup_primary()``, which the first ``fork()`` calls, as in Node)."""
        return self._policy

    @scheduling_policy.setter
    def scheduling_policy(self, value: int) -> None:  # Node ignores it silently once frozen
        self._policy = value
        if self._frozen is not None and value != self._frozen:
            stays = "SCHED_RR" if self._frozen == SCHED_RR else "SCHED_NONE"
            print(f"sockserve: warning: cluster.scheduling_policy = {value!r} after the first setup_primary"
                  f"() or fork() has no effect: it stays {stays}", file=sys.stderr, flush=True)

    def setup_primary(self, exec: str | None = None, args: list[str] | None = None,  # noqa: A002
                      cwd: str | None = None, silent: bool | None = None) -> None:
        """Node's ``setupPrimary``: what later ``fork()`` calls start; emits ``setup``.  The first
        call freezes ``scheduling_policy`` (ValueError unless SCHED_RR or SCHED_NONE, Node's assert)."""
        loop = _loop("setup_primary")
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        settings = {"exec": os.path.abspath(sys.argv[0]), "args": sys.argv[1:], "cwd": None, "silent": False,
                    "module": spec.name if spec is not None and spec.name != "__main__" else None,
                    **self.settings}
        given = {"exec": exec, "args": args, "cwd": cwd, "silent": silent}
        settings.update({k: v for k, v in given.items() if v is not None})
        if exec is not None:
            settings["module"] = None
        self.settings = settings
        if self._frozen is None:  # Node: "Freeze policy." in the first setupPrimary
            if self._policy not in POLICY:
                raise ValueError(f"bad cluster.scheduling_policy: {self._policy!r} "
                                 "(SCHED_RR or SCHED_NONE)")
            self._frozen = self._policy
        loop.call_soon(self.emit, "setup", dict(settings))

    setup_master = setup_primary

    def fork(self, env: dict[str, str] | None = None) -> Worker:
        """Start a worker; its ``fork`` event comes on the next loop turn (Node: nextTick)."""
        loop = _loop("fork")
        if self.stopping:  # Node's primary would be dead: a respawn from "exit" must not hold it
            self._ids += 1
            return Unstarted(self._ids)
        if not self.settings or self._frozen is None:
            self.setup_primary()
        pool = self._start(loop)
        self._ids += 1
        handle = pool.fork(self._ids, self._argv(), {k: str(v) for k, v in (env or {}).items()},
                           silent=bool(self.settings["silent"]))
        worker = Worker(handle, loop)
        self.workers[worker.id] = worker
        loop.call_soon(self.emit, "fork", worker)
        return worker

    def _argv(self) -> list[str]:
        s = self.settings
        target = ["-m", s["module"]] if s["module"] else [s["exec"]]
        if s["cwd"]:  # posix_spawn has no chdir: the worker's first act is the chdir
            boot = "import os, runpy, sys; os.chdir(sys.argv.pop(1)); " + (
                "runpy.run_module(sys.argv[1], run_name='__main__', alter_sys=True)" if s["module"]
                else "sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')")
            return [sys.executable, "-c", boot, s["cwd"], *target[-1:], *s["args"]]
        return [sys.executable, *target, *s["args"]]

    def _start(self, loop: asyncio.AbstractEventLoop) -> LibraryPool:
        """At the first fork: the policy is frozen, systemd's sockets taken, the pool made."""
        if self._pool is None:
            assert self._frozen is not None  # fork() ran setup_primary()
            self._inherited = listen_fds()  # unsets LISTEN_*: workers never see them
            self._pool = new_pool(loop, POLICY[self._frozen], self._inherited,
                                  _Relay(self), scrub_env(os.environ))
        return self._pool

    def disconnect(self, callback: Any = None) -> asyncio.Future[None]:
        """Disconnect every worker; ``callback()`` (and the returned future) once all are
        gone and every handle is closed."""
        done = _loop("disconnect").create_future()
        if callback is not None:
            done.add_done_callback(lambda _: callback())
        self._all_gone.append(done)
        for worker in list(self.workers.values()):
            if worker.is_connected():
                worker.disconnect()
        self._check_gone()
        return done

    def _check_gone(self) -> None:
        if not self.workers:
            waiting, self._all_gone = self._all_gone, []
            for future in waiting:
                if not future.done():
                    future.set_result(None)

    def kill_all(self) -> None:
        for worker in list(self.workers.values()):
            worker.process.kill(signal.SIGKILL)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.dispatcher.close()
            close_inherited(self._inherited or [])


class _Relay:
    """The pool's events (master/events.py names) turned into Node's, on Node's objects."""

    def __init__(self, primary: Primary) -> None:
        self.primary = primary

    def emit(self, event: str, handle: WorkerHandle, *args: Any) -> None:
        primary = self.primary
        worker = primary.workers.get(handle.id)
        if worker is None:
            return
        if event == "online":
            worker._life.online()
            worker.emit("online")
            primary.emit("online", worker)
        elif event == "listening":
            worker._life.listening()
            listener = primary._pool.dispatcher.listeners.get(args[0]) if primary._pool else None
            info = address_info(listener.address if listener else args[0], parse_key(args[0])[0])
            worker.emit("listening", info)
            primary.emit("listening", worker, info)
        elif event == "leaving":
            worker._life.ask()
        elif event == "message":
            worker.emit("message", args[0])
            primary.emit("message", worker, args[0])
        elif event == "disconnect":
            self._left(worker, worker._life.disconnected(), "disconnect")
        elif event == "exit":
            code = args[0].code
            worker.process.exit_code = code if code >= 0 else None
            worker.process.signal_code = _signal_name(-code) if code < 0 else None
            self._left(worker, worker._life.exited(), "exit", worker.process.exit_code,
                       worker.process.signal_code)

    def _left(self, worker: Worker, remove: bool, event: str, *args: Any) -> None:
        if remove:  # before the later of disconnect/exit is emitted (Node's docs)
            self.primary.workers.pop(worker.id, None)
        worker.emit(event, *args)
        self.primary.emit(event, worker, *args)
        if remove:
            self.primary._check_gone()


def _loop(name: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"cluster.{name}() runs in the program's loop: call it from "
                           "main(), started by cluster.run(main)") from None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


async def run_primary(primary: Primary, main: Any) -> int:
    """``cluster.run(main)`` in the primary: ``main()``, then serve until no worker is left and
    nothing else runs (Node's process lives while it has workers or timers).  SIGTERM/SIGINT:
    ``cluster.disconnect()``, exit 0 once every worker left; a second signal kills them."""
    loop = asyncio.get_running_loop()
    stopping: list[bool] = []

    def stop() -> None:
        if stopping:
            primary.kill_all()
        stopping.append(True)
        primary.stopping = True
        primary.disconnect()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    me = asyncio.current_task()
    try:
        result = main()
        if inspect.isawaitable(result):
            await result
        while primary.workers or (not stopping and any(t is not me for t in asyncio.all_tasks())):
            await asyncio.sleep(0.05)
        return 0
    finally:
        primary.close()
