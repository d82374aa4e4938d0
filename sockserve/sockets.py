"""What a start refuses given the sockets it got (systemd's or its own), pure: no I/O.

One check for the start (master/serve.py), a reload's re-read (``serve.checked_reread``,
against the sockets the running master got at its start) and ``sockserve check`` (against
the names systemd will pass, or the running master's): a ``proxy_protocol`` entry must name a
listener, and ``agent`` must not differ from the agent socket systemd passes (the socket
unit's ``FileDescriptorName=agent``, master/agent.py).  So a reload or a check never accepts
what the next ``systemctl restart`` would refuse (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .address import parse_address
from .errors import ConfigError
from .worker.proxypolicy import unmatched

AGENT = "agent"  # FileDescriptorName= of the agent's socket (systemd/listenfds.AGENT)


@dataclass(frozen=True)
class Sockets:
    """The sockets a start has: ``listeners`` ``(key, address, name)`` (address "" when not
    known: ``sockserve check`` knows systemd's names only), and the agent socket systemd passes:
    its address, "" when passed but the address is not known, None when none is passed."""

    listeners: tuple[tuple[str, str, str], ...]
    agent: str | None = None

    @property
    def addresses_known(self) -> bool:
        return all(address for _, address, _ in self.listeners)


def check_sockets(config: Any, sockets: Sockets) -> None:
    """ConfigError (exit 2), one line, when ``config`` does not fit ``sockets``."""
    check_proxy_protocol(config.proxy_protocol, sockets)
    check_agent(config.agent, sockets.agent)


def check_proxy_protocol(entries: Any, sockets: Sockets) -> None:
    """Each entry names a listener (key, address as bound, name) or is ``all``.  Entries that
    are addresses pass unjudged when the addresses are not known."""
    wrong = unmatched(entries, sockets.listeners)
    if not sockets.addresses_known:
        wrong = [entry for entry in wrong if not _is_address(entry)]
    if wrong:
        known = ", ".join(key for key, _, _ in sockets.listeners)
        raise ConfigError(f"proxy_protocol: {', '.join(map(repr, wrong))} names no listener "
                          f"(listeners: {known}; or 'all')")


def check_agent(wanted: str | None, passed: str | None) -> None:
    """``agent`` set while systemd passes the agent's socket elsewhere (or where, unknown)."""
    if not wanted or passed is None:
        return
    if passed and parse_address(wanted) == parse_address(passed):
        return
    where = f" on {passed}" if passed else ""
    raise ConfigError(f"agent: {wanted!r}, but the socket unit passes the agent's socket "
                      f"(FileDescriptorName={AGENT}){where}: remove agent from the configuration, "
                      "the socket unit sets the address")


def _is_address(entry: str) -> bool:
    try:
        parse_address(entry)
    except ConfigError:
        return False
    return ":" in entry or "/" in entry
