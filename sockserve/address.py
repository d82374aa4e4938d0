"""Bind addresses: ``HOST:PORT``, ``[IPv6]:PORT`` or ``unix:/PATH`` (``unix:@abstract``).

Pure: no I/O.  ``config.py`` re-exports ``Address`` and ``parse_address``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Address:
    """A bind address: ``host:port``, ``[v6]:port`` or ``unix:/path``."""

    family: str  # "tcp" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> Address:
    """``Address`` for ``text`` or ConfigError."""
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/") and not path.startswith("@"):
            raise ConfigError(f"bind {text!r}: a unix path must be absolute (unix:/run/x.sock)")
        return Address("unix", path=path)
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"bind {text!r}: expected HOST:PORT, [IPv6]:PORT or unix:/PATH")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"bind {text!r}: unbalanced brackets")
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"bind {text!r}: write IPv6 addresses as [addr]:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"bind {text!r}: port must be a number from 0 to 65535")
    return Address("tcp", host=host, port=int(port))
