"""Which listeners expect a PROXY header, and which peers may send one.  Pure: no I/O.

``--proxy-protocol`` names listeners by name (a systemd ``FileDescriptorName``, or ``NAME`` of
``--bind NAME=ADDR``) or by address (``127.0.0.1:8000``, ``[::1]:8000``, ``unix:/run/x.sock``,
as sockserve prints it), or says ``all``.  A peer may send a header only from
``--forwarded-allow-ips``, read the way uvicorn's ``ProxyHeadersMiddleware`` reads it
(addresses, networks, ``*``); a unix-socket peer has no address, so (as for uvicorn's proxy
headers) only ``*`` trusts it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

ALL = "all"


def expects(entries: Iterable[str], key: str, address: str, name: str = "") -> bool:
    """Whether the listener ``key`` at ``address`` named ``name`` (systemd's fd name, or a
    ``--bind NAME=ADDR``; "" for none) is one of ``entries`` (``--proxy-protocol``)."""
    wanted = {entry.strip() for entry in entries}
    return ALL in wanted or bool({key, address, name} & wanted)


def unmatched(entries: Iterable[str], listeners: Iterable[tuple[str, ...]]) -> list[str]:
    """The ``entries`` naming none of ``listeners`` (``(key, address, name)``): a typo, most likely."""
    known = {part for parts in listeners for part in parts if part} | {ALL}
    return [entry for entry in (e.strip() for e in entries) if entry not in known]


class TrustedPeers:
    """``--forwarded-allow-ips``: comma-separated addresses, networks (``10.0.0.0/8``) or ``*``."""

    def __init__(self, spec: str | Iterable[str]) -> None:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        items = [item.strip() for item in items if item.strip()]
        self.everyone = "*" in items
        self.networks = []
        self.literals = set()
        for item in items:
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.literals.add(item)  # as uvicorn: kept, compared as text
        self._judge = functools.lru_cache(maxsize=4096)(self._compute)  # as uvicorn's

    def __contains__(self, host: str | None) -> bool:
        if self.everyone:
            return True
        return bool(host) and len(host) <= 64 and self._judge(host)  # an address is ≤ 45 chars

    def _compute(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:127.0.0.1 on a dual-stack listener
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)
