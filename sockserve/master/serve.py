"""Start serving: logging, listeners (inherited from systemd or bound here), the master."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .. import apploader
from ..config import Config, ConfigError, validate_for_start, validate_reload
from ..fdlimit import check_startup
from ..listeners import Listener, bind_config, remove_socket_files
from ..logs import LogConfigError
from ..settings import SETTINGS
from ..sockets import Sockets, check_sockets
from ..systemd import ListenFdsError, listen_fds, setup_logging
from ..systemd.listenfds import AGENT, listener_name
from ..tls import check_tls
from .control import ControlError
from .guards import check_listeners
from .master import Master

log = logging.getLogger("sockserve.master")
SECRET = {"ssl_keyfile_password"}
Reread = Callable[[], tuple[Config, bool]]  # a fresh (config, explicit_bind), or ConfigError


def serve(config: Config, *, explicit_bind: bool, reread: Reread) -> int:
    """Run the master until it stops; its exit code.  Raises ConfigError for bad settings.

    ``reread`` reads the configuration again (cli.py); a reload gets it wrapped by
    ``checked_reread``, so it refuses what this start would refuse.
    """
    check_startup(config, len(config.bind))  # before anything opens fds: one line, exit 2
    try:
        setup_logging(config.log_target, config.log_level, log_config=config.log_config)
    except LogConfigError as exc:
        raise ConfigError(str(exc)) from None
    log.debug("settings other than the defaults: %s", changed_settings(config) or "none")
    try:
        inherited = listen_fds()
    except ListenFdsError as exc:
        raise ConfigError(str(exc)) from None
    names = {s.key: listener_name(s.name) for s in inherited if s.key != AGENT} if inherited else None
    listening = inherited and all(s.listening for s in inherited)  # Accept=yes: inetd.py decides
    given = inherited_sockets(inherited) if listening else None
    start_checks(config, inherited=bool(inherited), explicit_bind=explicit_bind, listeners=names,
                 sockets=given)
    if not inherited:
        listeners = bind_config(config)
        try:
            bound = Sockets(tuple((lst.key, lst.address, lst.name) for lst in listeners))
            check_sockets(config, bound)
            again = checked_reread(config, False, reread, names, bound)
            return _run(Master(config, listeners, reread=again))
        finally:
            remove_socket_files(listeners)
    again = checked_reread(config, True, reread, names, given)
    connected = [s for s in inherited if not s.listening]
    if connected:
        from ..systemd.inetd import serve_connections

        return serve_connections(config, [s.sock for s in connected],
                                 [listener_name(s.name) for s in connected])
    listeners = [Listener(key=s.key, address=s.address, sock=s.sock, name=listener_name(s.name),
                          inherited=True) for s in inherited]
    return _run(Master(config, listeners, reread=again))


def inherited_sockets(inherited: list[Any]) -> Sockets:
    """systemd's sockets as ``sockets.Sockets``: the listeners, and the agent's address."""
    agent = next((s.address for s in inherited if s.key == AGENT), None)
    return Sockets(tuple((s.key, s.address, listener_name(s.name)) for s in inherited if s.key != AGENT),
                   agent)


def _run(master: Master) -> int:
    """The master's exit code; a control socket it cannot bind is a bad setting (exit 2)."""
    try:
        return master.run()
    except ControlError as exc:
        raise ConfigError(str(exc)) from None


def start_checks(config: Config, *, inherited: bool, explicit_bind: bool,
                 listeners: dict[str, str] | None = None, source: str = "LISTEN_FDNAMES",
                 sockets: Sockets | None = None) -> None:
    """What a start refuses before it binds, with its one-line ConfigError: the values and
    what socket activation forbids (``config.validate_for_start``, ``guards.check_listeners``;
    ``listeners``: systemd's, key -> name, for the app mapping; ``source``: where they come from),
    the fd limit (``fdlimit.check_startup``), the TLS files (``tls.check_tls``), and, when
    ``sockets`` are known, ``proxy_protocol`` and ``agent`` against them (``sockets.check_sockets``;
    a start that binds checks them once bound).  Start, reload and ``sockserve check`` all run this."""
    validate_for_start(config, inherited=inherited, explicit_bind=explicit_bind, listeners=listeners,
                       source=source)
    if sockets is not None:
        check_sockets(config, sockets)
    check_listeners(config, from_systemd=inherited)
    check_startup(config, len(config.bind))
    check_tls(config)


def checked_reread(started: Config, inherited: bool, reread: Reread,
                   listeners: dict[str, str] | None = None,
                   sockets: Sockets | None = None) -> Callable[[], Config]:
    """The one function a reload calls for its configuration: read it again, check it as
    this start was checked (same one-line messages; the app mapping against the same
    ``listeners`` and ``sockets``: the ones the master has), then refuse what only a restart
    can change (``validate_reload``).
    Raises ConfigError; returns the Config to run."""
    def again() -> Config:
        config, explicit_bind = reread()
        start_checks(config, inherited=inherited, explicit_bind=explicit_bind, listeners=listeners,
                     source="reload", sockets=sockets)  # the sockets the master got at its start
        apploader.check(config)  # what the start's apploader.prepare and hooks import refuse
        validate_reload(started, config)
        return config
    return again


def changed_settings(config: Config) -> str:
    """``key=value`` for every setting not at its default (secrets masked), for ``--log-level debug``."""
    def shown(name: str, value: Any) -> str:
        return "***" if name in SECRET else repr(value)

    return ", ".join(f"{s.name}={shown(s.name, getattr(config, s.name))}" for s in SETTINGS
                     if getattr(config, s.name) != s.default)
