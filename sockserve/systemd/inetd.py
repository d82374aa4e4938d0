"""Accept=yes (systemd's inetd mode): serve the passed connection in this process, then exit.

With ``Accept=yes`` systemd accepts and starts one service instance per
connection, handing it the connected socket; no master/worker split is
useful for a single connection, so the app runs right here.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from .. import appmap
from ..config import EXIT_APP, EXIT_OK, Config
from ..eventloop import new_event_loop
from ..logs import log_event
from ..worker import apps, appset, drain
from ..worker.proxyread import ProxyGate

log = logging.getLogger("sockserve.master")


def serve_connections(config: Config, socks: list[socket.socket], names: list[str] | None = None) -> int:
    """Serve ``socks`` (connected; ``names``: their listener names, for per-listener apps and
    ``--proxy-protocol``) until they close; the exit code."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_serve(config, socks, names or [""] * len(socks)))


async def _serve(config: Config, socks: list[socket.socket], names: list[str]) -> int:
    loop = asyncio.get_running_loop()
    keys = {f"fd{i}": name for i, name in enumerate(names)}
    try:
        adapter = appset.load_apps(config.for_worker(0, keys), 0, loop)
        await adapter.startup()
    except (appset.AppsLoadError, apps.AppStartupError) as exc:
        app = appmap.shown(config.app) if config.app else "the built-in app"
        why = str(exc) if isinstance(exc, appset.AppsLoadError) else f"cannot load app {app!r}: {exc}"
        log_event(log, logging.CRITICAL, "worker_boot_failure", why)
        return EXIT_APP
    gate = ProxyGate(loop, config.for_worker(0, keys))  # --proxy-protocol: 'all' or the fd name
    for key, sock in zip(keys, socks, strict=True):
        sock.setblocking(False)
        one = adapter.for_key(key) if isinstance(adapter, appset.AppSet) else adapter
        gate.listener(key, "")
        gate.mark(key, sock)
        factory = one.protocol_factory
        if sock.fileno() in gate.marked and not (factory := await gate.admit(sock, factory)):
            continue  # refused and closed
        await loop.connect_accepted_socket(factory, sock, ssl=one.ssl)
    while adapter.busy():  # the client decides; uvicorn closes an idle keep-alive after 5 s
        await asyncio.sleep(drain.POLL)
    await adapter.shutdown()
    return EXIT_OK
