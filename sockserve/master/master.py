"""The master: one event loop that owns listeners, workers and the talk with systemd.

The lifecycle (start, READY=1, reload, resize, crash, stop; lifecycle.TABLE) is
decided by the pure supervisor core; this shell turns signals (TERM graceful
stop, INT/QUIT fast stop, HUP reload, TTIN/TTOU one worker more/less), control
requests, worker messages, exits and loop timers into its events, and carries
its actions out (shell.py).  No polling: deadlines are timers the core asks for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from .. import apploader
from ..config import Config
from ..eventloop import new_event_loop
from ..listeners import Listener, bind_config, migrate_req_enabled
from ..systemd import Notifier, log_event, scrub_env
from . import lifecycle as L
from .agent import AgentServer, take_inherited
from .control import MAX_LOGGED, ControlServer, default_control_path, start_control
from .events import Emitter
from .guards import Guards
from .handoff import Dispatcher
from .pool import Pool
from .shell import Shell
from .supervisor import Supervisor
from .workers import WorkerHandle

log = logging.getLogger("sockserve.master")
REAP_AT_EXIT = 5.0  # seconds to reap workers still there when the master exits


class Master(Shell):
    def __init__(self, config: Config, listeners: list[Listener] | None = None, *,
                 reread: Callable[[], Config] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        environ = dict(os.environ if environ is None else environ)
        self.config = config
        self.core = Supervisor(config)
        self.emitter = Emitter()
        self.notifier = Notifier.from_env(environ)
        self._listeners = listeners
        self._reread = reread
        self._env = scrub_env(environ)
        self._control_path = config.control_socket or default_control_path(environ)
        self._status = ""
        self._requests: dict[int, asyncio.Future[tuple[bool, str, bool]]] = {}
        self._next_request = 1

    # ------------------------------------------------------------ public API
    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Node's ``cluster.on(event, listener)``."""
        self.emitter.on(event, callback)

    @property
    def workers(self) -> dict[int, WorkerHandle]:
        return self.pool.workers

    @property
    def state(self) -> str:
        return self.core.phase.value

    def statistics(self) -> dict[str, Any]:
        """What is in effect: the serving generation and its policy, every live worker;
        ``agent``: the HAProxy agent's address and answer now (None without one, agent.py);
        ``native``: the rr hand-off runs its C hot path (native.py; off while a reload that
        changes ``policy`` has two policies in use, with shared, or with SOCKSERVE_NATIVE=0)."""
        workers = [w.as_dict() for w in sorted(self.pool.workers.values(), key=lambda w: w.id)]
        summary = self.core.summary()
        return {
            "pid": os.getpid(), "state": summary["state"], "policy": summary["policy"],
            "generation": summary["generation"], "workers": workers,
            "served": self.pool.served_by_dead + sum(w["served"] for w in workers),
            "listeners": list(self.dispatcher.listeners),
            # key -> name ("" unnamed), and whether systemd passed them: what a reload checks
            # the app mapping against (``sockserve check --socket-activated`` asks for it)
            "listener_names": {key: lst.name for key, lst in self.dispatcher.listeners.items()},
            "socket_activated": any(lst.inherited for lst in self.dispatcher.listeners.values()),
            # and their addresses, and the agent's socket systemd passed (None: none), for the same
            "listener_addresses": {key: lst.address for key, lst in self.dispatcher.listeners.items()},
            "agent_socket": self.agent.inherited.address if self.agent.inherited else None,
            "last_reload_error": summary.get("last_reload_error"),
            "accept_paused": self.dispatcher.fd_exhausted, "spawn_failures": self.pool.spawn_failures,
            "native": self.dispatcher.native,
            "agent": self.agent.statistics(),
            **self.guards.statistics(),
        }

    def run(self) -> int:
        """Serve until stopped; the exit code for systemd."""
        with asyncio.Runner(loop_factory=new_event_loop) as runner:  # cancels leftover tasks
            return runner.run(self._main())

    async def reload(self) -> tuple[bool, str]:
        """Rolling restart; (ok, message) of this request's own reload."""
        ok, message, _ = await self._reload()
        return ok, message

    async def _reload(self) -> tuple[bool, str, bool]:
        """(ok, message, superseded): superseded when a stop answered it (it will not happen)."""
        request, self._next_request = self._next_request, self._next_request + 1
        future = self._requests[request] = self.loop.create_future()
        self.feed(L.Reload(request))
        return await future

    # ------------------------------------------------------------ lifecycle
    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        inherited_agent, listeners = take_inherited(self._listeners or bind_config(self.config))
        self.dispatcher = Dispatcher(self.loop, listeners, self.config.policy, self.config.rr_window, {})
        self.pool = Pool(self.loop, self.dispatcher, self.emitter, self._env, self.feed)
        self.pool.on_ack = self._queue_checked
        self._shell_init()
        self.guards = Guards(self)
        self.agent = AgentServer(self, inherited_agent)
        control = ControlServer(self._control_path, self._control) if self._control_path else None
        try:
            self._install_signals()
            if control:
                control = await start_control(control, bool(self.config.control_socket), self.loop)
            self._load_hooks()
            self.guards.start()
            await self.agent.start()
            self._warn_reuseport()
            self.notifier.notify(f"MAINPID={os.getpid()}")
            self.feed(L.Start())
            ticker = self.loop.create_task(self._tick())
            code = await self._stopped
            ticker.cancel()
            return code
        finally:
            await self._shutdown(control)

    def _warn_reuseport(self) -> None:
        if self.config.policy == "reuseport" and migrate_req_enabled() is False:
            log_event(log, logging.WARNING, "reuseport_migrate_off",
                      "net.ipv4.tcp_migrate_req is 0: connections queued on a worker's socket are "
                      "reset when that worker leaves (set it to 1 for lossless reloads)")

    async def _shutdown(self, control: ControlServer | None) -> None:
        """Leave nothing behind: workers, timers, control socket, listeners."""
        self._cancel_timers()
        for future in self._requests.values():
            if not future.done():
                future.set_result((False, "stopping", True))
        try:
            await asyncio.wait_for(self.pool.kill_all(), REAP_AT_EXIT)
        except TimeoutError:
            log_event(log, logging.ERROR, "reap_timeout", f"workers {sorted(self.pool.workers)} not reaped")
        if control:
            control.close()
        self.agent.close()
        await self.guards.close()
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
        self.feed(L.Term(self.pool.hung(self.loop.time())))

    def handle_int(self) -> None:
        self.feed(L.Int())

    def handle_hup(self) -> None:
        self.feed(L.Reload(None))

    def handle_ttin(self) -> None:
        self.feed(L.Ttin())

    def handle_ttou(self) -> None:
        self.feed(L.Ttou())

    # ------------------------------------------------------------ control socket
    async def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            return {"ok": True, **self.statistics()}
        if command == "reload":
            wait = request.get("wait", True)
            if not isinstance(wait, bool):
                return {"ok": False, "error": "reload: \"wait\" must be true or false"}
            if not wait:
                self.handle_hup()
                return {"ok": True, "message": "reload started"}
            ok, message, superseded = await self._reload()  # superseded: a stop came first
            return {"ok": ok, "message": message} | ({"superseded": True} if superseded else {})
        return {"ok": False, "error": f"unknown command {str(command)[:MAX_LOGGED]!r}"}

    # ------------------------------------------------------------ periodic work
    async def _tick(self) -> None:
        """Silence checks, the notify retry queue, WATCHDOG=1 while a worker serves, STATUS=."""
        watchdog = self.notifier.watchdog_interval()
        interval = min(self.config.heartbeat_interval(), watchdog or 1.0)
        last = last_ping = self.loop.time()
        while True:
            await asyncio.sleep(interval)
            now = self.loop.time()
            stalled = max(0.0, now - last - 2 * interval)  # the master itself did not run
            last = now
            self.pool.check_silence(now, stalled)
            self.guards.tick(now)
            self.notifier.flush()  # what a busy receiver could not take yet
            if watchdog and now - last_ping >= watchdog * 0.9 and self.core.watchdog_ok():
                self.notifier.notify("WATCHDOG=1")
                last_ping = now
            self._changed()
