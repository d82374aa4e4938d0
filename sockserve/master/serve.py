"""Start serving: logging, listeners (inherited from systemd or bound here), the master."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Config, ConfigError, bind_under_systemd
from ..fdlimit import check_startup
from ..listeners import Listener, bind_config, remove_socket_files
from ..logs import LogConfigError
from ..settings import SETTINGS
from ..systemd import ListenFdsError, listen_fds, setup_logging
from ..tls import check_tls
from .control import ControlError
from .guards import check_listeners
from .master import Master

log = logging.getLogger("sockserve.master")
SECRET = {"ssl_keyfile_password"}


def serve(config: Config, *, explicit_bind: bool, reread: Callable[[], Config]) -> int:
    """Run the master until it stops; its exit code.  Raises ConfigError for bad settings."""
    check_startup(config, len(config.bind))  # before anything opens fds: one line, exit 2
    try:
        setup_logging(config.log_target, config.log_level, log_config=config.log_config)
    except LogConfigError as exc:
        raise ConfigError(str(exc)) from None
    log.debug("settings other than the defaults: %s", changed_settings(config) or "none")
    check_tls(config)
    try:
        inherited = listen_fds()
    except ListenFdsError as exc:
        raise ConfigError(str(exc)) from None
    check_listeners(config, from_systemd=bool(inherited))
    if not inherited:
        listeners = bind_config(config)
        try:
            return _run(Master(config, listeners, reread=reread))
        finally:
            remove_socket_files(listeners)
    if explicit_bind:
        raise ConfigError(bind_under_systemd(config.config_file))
    if config.policy == "reuseport":
        raise ConfigError("policy: reuseport needs sockserve to bind the address itself, "
                          "not sockets passed by systemd; use rr or shared")
    connected = [s for s in inherited if not s.listening]
    if connected:
        from ..systemd.inetd import serve_connections

        return serve_connections(config, [s.sock for s in connected])
    listeners = [Listener(key=s.key, address=s.address, sock=s.sock) for s in inherited]
    return _run(Master(config, listeners, reread=reread))


def _run(master: Master) -> int:
    """The master's exit code; a control socket it cannot bind is a bad setting (exit 2)."""
    try:
        return master.run()
    except ControlError as exc:
        raise ConfigError(str(exc)) from None


def changed_settings(config: Config) -> str:
    """``key=value`` for every setting not at its default (secrets masked), for ``--log-level debug``."""
    def shown(name: str, value: Any) -> str:
        return "***" if name in SECRET else repr(value)

    return ", ".join(f"{s.name}={shown(s.name, getattr(config, s.name))}" for s in SETTINGS
                     if getattr(config, s.name) != s.default)
