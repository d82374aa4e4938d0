"""Start serving: logging, listeners (inherited from systemd or bound here), the master."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config, ConfigError
from ..listeners import Listener, bind_all
from ..systemd import ListenFdsError, listen_fds, setup_logging
from .master import Master


def serve(config: Config, *, explicit_bind: bool, reread: Callable[[], Config]) -> int:
    """Run the master until it stops; its exit code.  Raises ConfigError for bad settings."""
    setup_logging(config.log_target, config.log_level)
    try:
        inherited = listen_fds()
    except ListenFdsError as exc:
        raise ConfigError(str(exc)) from None
    if not inherited:
        listeners = bind_all(config.addresses(), config.backlog, config.policy == "reuseport")
        return Master(config, listeners, reread=reread).run()
    if explicit_bind:
        raise ConfigError("bind: cannot be combined with sockets passed by systemd (LISTEN_FDS); "
                          "remove --bind/SOCKSERVE_BIND/bind= or the socket unit")
    if config.policy == "reuseport":
        raise ConfigError("policy: reuseport needs sockserve to bind the address itself, "
                          "not sockets passed by systemd; use rr or shared")
    connected = [s for s in inherited if not s.listening]
    if connected:
        from ..systemd.inetd import serve_connections

        return serve_connections(config, [s.sock for s in connected])
    listeners = [Listener(key=s.key, address=s.address, sock=s.sock, inherited=True) for s in inherited]
    return Master(config, listeners, reread=reread).run()
