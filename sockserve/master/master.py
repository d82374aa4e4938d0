"""The master: one event loop that owns listeners, workers and the talk with systemd.

Lifecycle: spawn a generation, READY=1 once every worker listens on every
listener, STATUS= while it runs, rolling restart on SIGHUP (RELOADING=1 …
READY=1), graceful stop on SIGTERM (STOPPING=1), fast stop on SIGINT/SIGQUIT,
one worker more/less on SIGTTIN/SIGTTOU.  Signal handlers only start work on
the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from .. import apploader
from ..config import EXIT_APP, EXIT_FAILURE, EXIT_OK, EXIT_SLACK, SHUTDOWN_BUDGET, Config, ConfigError
from ..eventloop import new_event_loop
from ..listeners import Listener, bind_config, migrate_req_enabled
from ..systemd import Notifier, extend_timeout_line, log_event, reloading_lines, scrub_env
from .control import ControlServer, default_control_path, start_control
from .events import Emitter
from .handoff import Dispatcher
from .pool import BootFailure, Pool
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")
POLL = 0.01  # seconds between checks while waiting for workers to come or go


class Master:
    def __init__(self, config: Config, listeners: list[Listener] | None = None, *,
                 reread: Callable[[], Config] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        self.config = config
        self.emitter = Emitter()
        self.notifier = Notifier.from_env(environ)
        self.state = "starting"
        self._listeners = listeners
        self._reread = reread
        self._env = scrub_env(environ)
        self._control_path = config.control_socket or default_control_path(environ)
        self._reload_task: asyncio.Task[tuple[bool, str]] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._status = ""

    # ------------------------------------------------------------ public API
    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Node's ``cluster.on(event, listener)``."""
        self.emitter.on(event, callback)

    @property
    def workers(self) -> dict[int, WorkerHandle]:
        return self.pool.workers

    def statistics(self) -> dict[str, Any]:
        workers = [w.as_dict() for w in sorted(self.pool.workers.values(), key=lambda w: w.id)]
        return {
            "pid": os.getpid(), "state": self.state, "policy": self.config.policy,
            "generation": self.pool.generation, "workers": workers,
            "served": self.pool.served_by_dead + sum(w["served"] for w in workers),
            "listeners": list(self.dispatcher.listeners),
            "accept_paused": self.dispatcher.fd_exhausted, "spawn_failures": self.pool.spawn_failures,
        }

    def run(self) -> int:
        """Serve until stopped; the exit code for systemd."""
        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # cancels leftover tasks
            return runner.run(self._main())

    # ------------------------------------------------------------ lifecycle
    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        listeners = self._listeners or bind_config(self.config)
        self.dispatcher = Dispatcher(self.loop, listeners, self.config.policy, self.config.rr_window, {})
        self.pool = Pool(self.loop, self.config, self.dispatcher, self.emitter, self._env, self._changed)
        self._stopped: asyncio.Future[int] = self.loop.create_future()
        control = ControlServer(self._control_path, self._control) if self._control_path else None
        try:
            self._install_signals()
            if control:
                control = await start_control(control, bool(self.config.control_socket), self.loop)
            self._load_hooks()
            code = await self._start()
            if code == EXIT_OK:
                ticker = self.loop.create_task(self._tick())
                code = await self._stopped
                ticker.cancel()
            return code
        finally:
            await self._shutdown(control)

    async def _start(self) -> int:
        if self.config.policy == "reuseport" and migrate_req_enabled() is False:
            log_event(log, logging.WARNING, "reuseport_migrate_off",
                      "net.ipv4.tcp_migrate_req is 0: connections queued on a worker's socket are "
                      "reset when that worker leaves (set it to 1 for lossless reloads)")
        self.notifier.notify(f"MAINPID={os.getpid()}", self._extend(self.config.boot_timeout))
        self.pool.generation = 1
        self.pool.start_generation(1, self.config)
        self.dispatcher.start_accepting()
        try:
            await asyncio.wait_for(asyncio.shield(self.pool.generation_ready(1)), self.config.boot_timeout)
        except BootFailure as exc:  # the worker's reason names the app and the error
            log_event(log, logging.CRITICAL, "worker_boot_failure", str(exc))
            return EXIT_APP
        except TimeoutError:
            log_event(log, logging.CRITICAL, "boot_timeout",
                      f"workers did not listen within {self.config.boot_timeout:g}s (boot_timeout)")
            return EXIT_FAILURE
        self.state = "running"
        self._changed()
        self.notifier.notify("READY=1", f"STATUS={self._status}")
        where = ", ".join(self.dispatcher.listeners)
        log_event(log, logging.INFO, "ready", f"ready: {self._status} on {where}")
        return EXIT_OK

    async def _shutdown(self, control: ControlServer | None) -> None:
        """Leave nothing behind: workers, control socket, listeners."""
        self.pool.size = 0
        self.pool.retire_all(kill=True)
        await self._until(lambda: not self.pool.workers, 5.0)
        if control:
            control.close()
        self.dispatcher.close()

    def _load_hooks(self) -> None:
        if self.config.hooks:  # from app_dir / the current directory, as the app (apploader)
            apploader.load_hooks(self.config.hooks)(self)

    # ------------------------------------------------------------ signals
    def _install_signals(self) -> None:
        handlers = {signal.SIGTERM: self.handle_term, signal.SIGINT: self.handle_int,
                    signal.SIGQUIT: self.handle_int, signal.SIGHUP: self.handle_hup,
                    signal.SIGTTIN: self.handle_ttin, signal.SIGTTOU: self.handle_ttou}
        for signum, handler in handlers.items():
            self.loop.add_signal_handler(signum, handler)

    def handle_term(self) -> None:
        self._request_stop(graceful=True)

    def handle_int(self) -> None:
        self._request_stop(graceful=False)

    def handle_hup(self) -> None:
        self.loop.create_task(self.reload())

    def handle_ttin(self) -> None:
        self.pool.resize(self.pool.size + 1)
        self._changed()

    def handle_ttou(self) -> None:
        self.pool.resize(self.pool.size - 1)
        self._changed()

    # ------------------------------------------------------------ stop
    def _request_stop(self, graceful: bool) -> None:
        if self._stopped.done():
            return
        if self._stop_task is None or not graceful:
            if self._stop_task is not None:
                self._stop_task.cancel()
            self._stop_task = self.loop.create_task(self._stop(graceful))

    async def _stop(self, graceful: bool) -> None:
        self.state = "stopping"
        self.notifier.notify("STOPPING=1", self._extend(self.config.graceful_timeout))
        log_event(log, logging.INFO, "stopping", "stopping " + ("gracefully" if graceful else "now"))
        self.pool.size = 0
        self.dispatcher.stop_listening()  # embedded mode: refuse new clients now; systemd's queue stays
        if graceful:
            await self._until(lambda: self.dispatcher.waiting() == 0, 5.0)  # hand out what we took
            self.pool.retire_all(kill=False)
            await self._until(lambda: not self.pool.workers, self.config.graceful_timeout + 5)
        else:
            self.pool.retire_all(kill=True, sig=signal.SIGQUIT)  # workers cancel, run lifespan shutdown
            await self._until(lambda: not self.pool.workers, SHUTDOWN_BUDGET + EXIT_SLACK)
        if not self._stopped.done():
            self._stopped.set_result(EXIT_OK)

    # ------------------------------------------------------------ reload
    async def reload(self) -> tuple[bool, str]:
        """Rolling restart; (ok, message).  Concurrent calls share one reload."""
        if self.state not in ("running", "reloading"):
            return False, f"cannot reload while {self.state}"
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = self.loop.create_task(self._reload())
        return await asyncio.shield(self._reload_task)

    async def _reload(self) -> tuple[bool, str]:
        self.state = "reloading"
        self.notifier.notify(*reloading_lines(), "STATUS=reloading")
        log_event(log, logging.INFO, "reload_start", "reload: starting a new generation")
        try:
            ok, message = await self._roll()
        finally:
            self.state = "running" if self.state == "reloading" else self.state
            self._changed()
            self.notifier.notify("READY=1", f"STATUS={self._status}")
        event, level = ("reload_done", logging.INFO) if ok else ("reload_failed", logging.ERROR)
        log_event(log, level, event, f"reload: {message}")
        return ok, message

    async def _roll(self) -> tuple[bool, str]:
        try:
            config = self._reread() if self._reread else self.config
        except ConfigError as exc:
            return False, f"configuration: {exc}"
        old, new = self.pool.generation, self.pool.next_generation()
        self.notifier.notify(self._extend(config.boot_timeout + config.graceful_timeout))
        self.pool.start_generation(new, config)
        try:
            await asyncio.wait_for(asyncio.shield(self.pool.generation_ready(new)), config.boot_timeout)
        except (BootFailure, TimeoutError) as exc:
            self.pool.retire(new, kill=True)
            why = str(exc) or f"workers did not listen within {config.boot_timeout:g}s"
            return False, f"generation {new} failed, generation {old} keeps serving: {why}"
        self.config = self.pool.config = config
        self.pool.generation, self.pool.size = new, config.workers
        self.pool.retire(old)
        await self._until(lambda: not self.pool.members(old), config.graceful_timeout + 5)
        return True, f"generation {new} serving, generation {old} drained"

    # ------------------------------------------------------------ control socket
    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            return {"ok": True, **self.statistics()}
        if command == "reload":
            if not request.get("wait", True):
                self.handle_hup()
                return {"ok": True, "message": "reload started"}
            ok, message = await self.reload()
            return {"ok": ok, "message": message}
        return {"ok": False, "error": f"unknown command {command!r}"}

    # ------------------------------------------------------------ periodic work
    async def _tick(self) -> None:
        watchdog = self.notifier.watchdog_interval()
        interval = min(self.config.heartbeat_interval(), watchdog or 1.0)
        last_ping = self.loop.time()
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            self.pool.check_timeouts(now)
            self.notifier.flush()  # what a busy receiver could not take yet
            if watchdog and now - last_ping >= watchdog * 0.9:
                self.notifier.notify("WATCHDOG=1")
                last_ping = now
            self._changed()

    def _changed(self) -> None:
        """Recompute STATUS=; tell systemd when it changed."""
        current = self.pool.members(self.pool.generation)
        listening = sum(1 for w in current if w.listening)
        served = self.pool.served_by_dead + sum(w.counters.served for w in self.pool.workers.values())
        status = (f"{listening}/{self.pool.size} workers, {self.config.policy}, {served} served, "
                  f"generation {self.pool.generation}")
        if self.state == "reloading":
            status = "reloading: " + status
        if status != self._status:
            self._status = status
            if self.state in ("running", "reloading"):
                self.notifier.notify(f"STATUS={status}")

    def _extend(self, seconds: float) -> str:
        return extend_timeout_line(seconds + 5)  # 5 s for our own start-up and exit

    async def _until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = self.loop.time() + timeout
        while not done():
            if self.loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL)
            self.pool.check_timeouts(self.loop.time())
        return True
