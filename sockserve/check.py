"""``sockserve check [--config F] [serve options]``: what a start would refuse, alone (``nginx -t``).

The settings go through the start's checks (``master.serve.start_checks``: the values, what
the environment forbids: ``bind`` or ``reuseport`` beside sockets passed by systemd, the TLS
files), and its ``log_config``.  Then what a start loads: chdir, env_file, virtualenv, app_dir
and the hooks (in this process, as the master does), and the app (in a subprocess started as
a worker is; per-listener apps: each listener's, the mapping checked against the names of
``bind`` or of systemd's sockets, appmap.py).
Under systemd (``--socket-activated``) the names are, first found: ``LISTEN_FDNAMES`` (with
``LISTEN_FDS``), ``--fdnames``, or the running master's (its control socket's ``status``:
the sockets a reload runs with, so ``check --socket-activated && systemctl reload`` checks
what the reload will check), else the service's socket units' (``systemctl show``).
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
from .master.control import ControlError, default_control_path, request
from .master.serve import start_checks
from .sockets import Sockets
from .systemd import ListenFdsError, parse_listen_env, units
from .systemd.listenfds import AGENT, listener_name

OK_LINE = "sockserve: configuration ok"
STATUS_TIMEOUT = 10.0  # seconds the running master has to answer ``status``


def check_parser() -> argparse.ArgumentParser:
    """The serve options, plus ``--socket-activated``."""
    parser = serve_parser()
    parser.prog = "sockserve check"
    parser.add_argument("--socket-activated", action="store_true",
                        help="check as if systemd passed sockets (LISTEN_FDS is present too); "
                        "the app mapping is checked against the running master's socket names "
                        "(its control socket), or --fdnames")
    parser.add_argument("--fdnames", metavar="NAME,...", help="the socket units' "
                        "FileDescriptorName= values, e.g. http,admin (implies --socket-activated)")
    parser.add_argument("--instance", metavar="NAME", help="with --socket-activated: ask the master "
                        "of sockserve@NAME.service for its socket names")
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the checks; print one line; the exit code."""
    try:
        values = gather(argv, environ, parser=check_parser())
        names, source = fd_names(environ), "LISTEN_FDNAMES"  # systemd's listeners, when it passed some
        agent = _agent_named(systemd_names(environ))
        given, instance = values.pop("fdnames", None), values.pop("instance", None)
        activated = bool(values.pop("socket_activated", False)) or names is not None or given is not None
        config = make_config(values, os.cpu_count() or 1)
        sockets = _sockets(names, agent) if activated else _sockets(bind_names(config.bind), None)
        if names is None and given is not None:
            names, source = parse_fdnames(given), "fdnames"
            sockets = _sockets(names, _agent_named(given.replace(",", ":")))
        elif names is None and activated and needs_names(config):
            names, source, sockets = master_names(config, environ, instance)
        start_checks(config, inherited=activated, explicit_bind="bind" in values, listeners=names,
                     source=source, sockets=sockets)
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


def needs_names(config: Config) -> bool:
    """Whether checking ``config`` needs systemd's socket names: a table of apps, ``agent``
    (systemd's agent socket must not clash), ``proxy_protocol`` naming listeners."""
    return bool(appmap.named(config.app) or config.agent or set(config.proxy_protocol) - {"all"})


def systemd_names(environ: Mapping[str, str]) -> str:
    """``LISTEN_FDNAMES`` when ``LISTEN_FDS`` is set, else ""."""
    return environ.get("LISTEN_FDNAMES", "") if environ.get("LISTEN_FDS") else ""


def _agent_named(names: str) -> str | None:
    """"" when systemd passes a socket named ``agent`` (its address unknown here), else None."""
    return "" if AGENT in (n.strip() for n in names.split(":")) else None


def _sockets(names: dict[str, str] | None, agent: str | None,
             addresses: Mapping[str, str] | None = None) -> Sockets | None:
    """key -> name (and key -> address when known) as ``sockets.Sockets``; None: not known."""
    if names is None:
        return None
    where = addresses or {}
    return Sockets(tuple((key, str(where.get(key, "")), name) for key, name in names.items()), agent)


def parse_fdnames(text: str) -> dict[str, str]:
    """``--fdnames http,admin`` (or LISTEN_FDNAMES' ``http:admin``) as name -> name."""
    names = [n.strip() for n in text.replace(":", ",").split(",") if n.strip()]
    bad = next((n for n in names if not appmap.valid_name(n)), None)
    if not names or bad is not None:
        raise ConfigError(f"--fdnames: {bad or text!r} is not a FileDescriptorName= (NAME,NAME...)")
    return {name: name for name in names if name != AGENT}  # the agent's socket is the master's


def master_names(config: Config, environ: Mapping[str, str],
                 instance: str | None) -> tuple[dict[str, str], str, Sockets | None]:
    """The running master's listeners, key -> name (its control socket's ``status``): the
    sockets systemd gave it, which a reload keeps; when no master answers, those the service's
    socket units will pass (systemd/units.py); which (appmap.SOURCES); and the sockets
    (``sockets.Sockets``: the agent's socket too).  ConfigError when neither can tell."""
    path = config.control_socket or default_control_path(environ, instance)
    how = "pass the socket units' FileDescriptorName= values with --fdnames NAME,NAME"
    if not path:
        raise ConfigError(f"--socket-activated: no control socket to ask for the socket names; {how}")
    try:
        stats = request(path, {"cmd": "status"}, STATUS_TIMEOUT)
    except ControlError as exc:  # not running: the names its socket units will give it
        try:
            service = units.service_name(instance)
            names = {n: n for n in units.socket_names(service) if n != AGENT}
            agent = units.agent_address(service)
            return names, "units", _sockets(names, agent)
        except units.UnitsError as why:
            raise ConfigError(f"--socket-activated: cannot ask the running master for its socket "
                              f"names ({exc}), nor systemd ({why}); {how}") from None
    names = stats.get("listener_names")
    if not stats.get("ok") or not isinstance(names, dict):
        why = stats.get("error") or "its status has no listener names"
        raise ConfigError(f"--socket-activated: the master at {path} did not tell its socket names "
                          f"({why}); {how}")
    if not stats.get("socket_activated"):
        raise ConfigError(f"--socket-activated: the master at {path} binds its own addresses "
                          "(it was not given sockets by systemd); check without --socket-activated")
    names = {str(key): str(name) for key, name in names.items()}
    return names, "master", _sockets(names, stats.get("agent_socket"), stats.get("listener_addresses"))


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

