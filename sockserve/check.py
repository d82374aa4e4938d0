"""``sockserve check [--config F] [serve options]``: what a start would refuse, alone (``nginx -t``).

The settings go through the start's checks (``master.serve.start_checks``: the values, what
the environment forbids: ``bind`` or ``reuseport`` beside sockets passed by systemd, the TLS
files), and its ``log_config``.  Then what a start loads: chdir, env_file, virtualenv, app_dir
and the hooks (in this process, as the master does), and the app (in a subprocess started as
a worker is; per-listener apps: each listener's, the mapping checked against the names of
``bind`` or ``LISTEN_FDNAMES``, appmap.py).
One line, and the exit code a start would give: 0 ``sockserve: configuration ok``; 2 a bad
setting; 6 the app cannot load.
Not checked: that the addresses can be bound (the running service holds them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from . import apploader, appmap
from .appmap import bind_names
from .cli import gather, serve_parser
from .config import EXIT_APP, EXIT_OK, EXIT_USAGE, Config, ConfigError, make_config
from .logs import LogConfigError, apply_log_config
from .master.serve import start_checks
from .systemd import ListenFdsError, parse_listen_env
from .systemd.listenfds import AGENT, listener_name

OK_LINE = "sockserve: configuration ok"


def check_parser() -> argparse.ArgumentParser:
    """The serve options, plus ``--socket-activated``."""
    parser = serve_parser()
    parser.prog = "sockserve check"
    parser.add_argument("--socket-activated", action="store_true",
                        help="check as if systemd passed sockets (LISTEN_FDS is present too)")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the checks; print one line; the exit code."""
    try:
        values = gather(argv, environ, parser=check_parser())
        names = fd_names(environ)  # systemd's listeners, when it passed some
        activated = bool(values.pop("socket_activated", False)) or names is not None
        config = make_config(values, os.cpu_count() or 1)
        start_checks(config, inherited=activated, explicit_bind="bind" in values, listeners=names)
        listeners = names if activated else {n or a: n for a, n in bind_names(config.bind).items()}
        if config.log_config:
            apply_log_config(config.log_config)  # as the start does (here it configures nothing kept)
        env = dict(environ)
        apploader.prepare(config, env)  # chdir, env_file, virtualenv, app_dir: this process is ours
        if config.hooks:
            apploader.load_hooks(config.hooks)
    except LogConfigError as exc:
        return _error(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _error(str(exc), EXIT_USAGE)
    failure = app_failure(config, env, listeners)
    if failure is not None:
        return _error(*failure)
    print(OK_LINE)
    return EXIT_OK


def fd_names(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The listeners ``LISTEN_FDS``/``LISTEN_FDNAMES`` describe (whatever ``LISTEN_PID`` says:
    they are the service's), fd label or name -> name ("" unnamed); None when there are none.

    Malformed values are a ConfigError, as at start.
    """
    pid = os.getpid()
    try:
        pairs = parse_listen_env({**environ, "LISTEN_PID": str(pid)}, pid)
    except ListenFdsError as exc:
        raise ConfigError(str(exc)) from None
    return {listener_name(name) or f"fd {fd}": listener_name(name) for fd, name in pairs
            if name != AGENT} or None  # the agent's socket is the master's (master/agent.py)


def app_failure(config: Config, environ: Mapping[str, str],
                listeners: dict[str, str] | None = None) -> tuple[str, int] | None:
    """Load the apps as a worker would (its interpreter and argv, ``SOCKSERVE_WORKER_CHECK=1``:
    load, no channel): the app of each of ``listeners`` (key -> name; None: not known, every
    app of the mapping); None, or (line, exit code)."""
    if listeners is None:
        listeners = {name: name for name in appmap.named(config.app)} | {"*": ""}
        listeners = listeners if appmap.default(config.app) else {k: n for k, n in listeners.items() if n}
    python = config.worker_python or sys.executable
    env = {k: v for k, v in environ.items() if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))}
    env["SOCKSERVE_WORKER_CONFIG"] = json.dumps(config.for_worker(0, listeners))
    env["SOCKSERVE_WORKER_CHECK"] = "1"
    try:
        done = subprocess.run(apploader.worker_argv(config.worker_python), env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=config.boot_timeout)
    except OSError as exc:
        return f"worker_python: cannot run {python!r}: {exc.strerror or exc}", EXIT_USAGE
    except subprocess.TimeoutExpired:
        return f"app: loading took longer than boot_timeout ({config.boot_timeout:g}s)", EXIT_APP
    if done.returncode == EXIT_OK:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    why = lines[-1] if lines else f"the worker exited with code {done.returncode}"
    return why.removeprefix("sockserve: error: "), EXIT_APP


def _error(message: str, code: int) -> int:
    print(f"sockserve: error: {message}", file=sys.stderr)
    return code

