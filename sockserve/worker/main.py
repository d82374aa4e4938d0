"""The worker process around a ``Worker``: environment, app loading, exit.

``python -m sockserve.worker`` lands in ``main()`` here.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import sys
from typing import Any, NoReturn

from ..cluster import protocol
from ..config import EXIT_APP, EXIT_FAILURE
from ..eventloop import new_event_loop
from ..logs import LogConfigError, apply_log_config, setup_logging
from . import appset, guards
from .child import ChildWorker

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main() -> None:
    """Entry of ``python -m sockserve.worker``; never returns."""
    if os.environ.get("SOCKSERVE_WORKER_CHECK") == "1":
        check_app()
    worker_id, sock, config = _read_environment()
    set_parent_death_signal(signal.SIGKILL)  # backstop; channel EOF is the main path
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the master's to handle
    _setup_logging(config, worker_id)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        adapter = appset.load_apps(config, worker_id, loop)  # per listener key (appset.py)
    except appset.AppsLoadError as exc:
        cause = exc.__cause__.__cause__ if exc.__cause__ else None
        logging.getLogger("sockserve.worker").debug("%s", exc, exc_info=cause)
        boot_failed(sock, worker_id, str(exc))
    worker = ChildWorker(worker_id, sock, loop, config=config, adapter=adapter)  # listen()'s class too
    guards.install(worker, adapter)  # request timeout, max_requests (issue 13)
    code = loop.run_until_complete(worker.run())
    worker.event("exit", "worker %d exits with code %d", worker_id, code)
    logging.shutdown()
    os._exit(code)  # no waiting for app threads (WSGI pool) after the drain


def check_app() -> NoReturn:
    """``sockserve check``: load the apps as a worker would (each listener's, appset.py; no
    channel, worker id 0); exit 0, or 6 with the start's line (``cannot load app ...``) on stderr."""
    config = json.loads(os.environ.get("SOCKSERVE_WORKER_CONFIG", "{}"))
    try:
        appset.load_apps(config, 0, new_event_loop())
    except appset.AppsLoadError as exc:
        _die(f"sockserve: error: {exc}", EXIT_APP)
    os._exit(0)


def _read_environment() -> tuple[int, socket.socket, dict[str, Any]]:
    """(id, channel socket, config) from SOCKSERVE_* variables, or exit 1 with one line."""
    try:
        worker_id = int(os.environ["SOCKSERVE_WORKER_ID"])
        fd = int(os.environ["SOCKSERVE_CHANNEL_FD"])
        config = json.loads(os.environ.get("SOCKSERVE_WORKER_CONFIG", "{}"))
        if not isinstance(config, dict):
            raise ValueError("SOCKSERVE_WORKER_CONFIG is not a JSON object")
        os.set_inheritable(fd, False)  # the app's children must not hold the channel open
        sock = socket.socket(fileno=fd)
    except KeyError as exc:
        _die(f"sockserve: worker: {exc.args[0]} is not set (the sockserve master starts workers)",
             EXIT_FAILURE)
    except (ValueError, OSError) as exc:
        _die(f"sockserve: worker: bad environment from the master: {exc}", EXIT_FAILURE)
    return worker_id, sock, config


def boot_failed(sock: socket.socket, worker_id: int, reason: str) -> NoReturn:
    """Tell the master why the app cannot run (it prints that once for all workers); exit 6.

    Without a master to tell, the reason goes to stderr.
    """
    try:
        sock.setblocking(True)
        sock.send(protocol.encode(protocol.BootError(reason)))
    except OSError:
        _die(f"sockserve: worker {worker_id}: {reason}", EXIT_APP)
    os._exit(EXIT_APP)


def _die(line: str, code: int) -> NoReturn:
    print(line, file=sys.stderr, flush=True)
    os._exit(code)


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` when the parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False



def _setup_logging(config: dict[str, Any], worker_id: int) -> None:
    target = str(config.get("log_target", "auto"))
    level = str(config.get("log_level", "info"))
    setup_logging(target, level, worker_id=worker_id)
    # uvicorn reports app errors on "uvicorn.error": same handlers as ours
    ours = logging.getLogger("sockserve")
    theirs = logging.getLogger("uvicorn")
    theirs.handlers = list(ours.handlers)
    theirs.setLevel(ours.level)
    theirs.propagate = False
    if config.get("log_config"):  # last, so it may reconfigure both (the master checked it)
        try:
            apply_log_config(str(config["log_config"]))
        except LogConfigError as exc:
            ours.warning("%s; keeping sockserve's logging", exc)
