"""Listening sockets: bound by the master (embedded mode) or inherited from systemd.

A listener has a name (systemd's ``FileDescriptorName=``, or NAME of ``--bind NAME=ADDR``;
"" when unnamed) and a key that workers ask for, like the key of Node's ``queryServer``:
its name when the name is its own (unique among the listeners), else its address.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import stat
from dataclasses import dataclass
from typing import Any

from .appmap import listener_keys
from .config import Address, ConfigError, parse_address

MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"


@dataclass
class Listener:
    key: str  # what workers ask for (QueryServer): the unique name, else the address
    address: str  # printable, e.g. 127.0.0.1:8000 or unix:/run/x.sock
    sock: socket.socket
    name: str = ""  # FileDescriptorName= / --bind NAME=ADDR; "" when unnamed (appmap.py)
    listening: bool = True  # False: bound only (reuseport reserves the address)
    inherited: bool = False  # passed by systemd: its queue outlives us, never shut it down
    path_identity: tuple[int, int] | None = None  # (dev, ino) of a unix socket file we created


def bind_config(config: Any) -> list[Listener]:
    """``bind_all`` for ``config``'s addresses, backlog, policy and unix socket mode/owner."""
    mode = int(config.unix_socket_mode, 8) if config.unix_socket_mode else None
    binds = config.binds()
    return bind_all(tuple(a for _, a in binds), config.backlog, config.policy == "reuseport", mode=mode,
                    owner=config.unix_socket_owner, names=tuple(n for n, _ in binds))


def remove_socket_files(listeners: list[Listener]) -> None:
    """Unlink the unix socket files sockserve created, if they are still the same files (clean stop).

    Sockets passed by systemd are the socket unit's to remove; a file someone
    replaced since is left alone.
    """
    for listener in listeners:
        path = listener.address[5:]
        if listener.path_identity is None or not listener.address.startswith("unix:/"):
            continue
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == listener.path_identity and stat.S_ISSOCK(st.st_mode):
                os.unlink(path)


def bind_all(addresses: tuple[Address, ...], backlog: int, reuseport: bool, *,
             mode: int | None = None, owner: str | None = None,
             names: tuple[str, ...] = ()) -> list[Listener]:
    """Bind every address or raise ConfigError naming the one that failed.

    ``names``: the listeners' names, in the order of ``addresses`` (unique; "" unnamed): a
    named listener's key is its name.

    ``mode`` (e.g. 0o660) and ``owner`` (``USER[:GROUP]`` or ``:GROUP``) apply
    to unix socket files, before they listen (gunicorn/uvicorn leave them to
    the umask; nginx as another user then gets EACCES).
    """
    listeners: list[Listener] = []
    try:
        for address in addresses:
            listeners.append(_bind(address, backlog, reuseport, mode, owner))
    except ConfigError:
        for listener in listeners:
            listener.sock.close()
        remove_socket_files(listeners)
        raise
    names = names or ("",) * len(listeners)
    keys = listener_keys([(name, listener.address) for name, listener in zip(names, listeners, strict=True)])
    for listener, name, key in zip(listeners, names, keys, strict=True):
        listener.name, listener.key = name, key
    return listeners


def _bind(address: Address, backlog: int, reuseport: bool, mode: int | None = None,
          owner: str | None = None) -> Listener:
    identity = None
    try:
        sock = _socket_for(address)
        if address.family == "unix":
            unlink_stale(address.path)
            sock.bind(address.path)
            if not address.path.startswith("@"):
                identity = _set_mode_owner(address, mode, owner)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address.host, address.port))
        if not reuseport:  # with reuseport the master only reserves the address
            sock.listen(backlog)
    except OSError as exc:
        raise ConfigError(f"bind {address}: {exc.strerror or exc}") from None
    printable = _printable(sock, address)
    return Listener(key=printable, address=printable, sock=sock, listening=not reuseport,
                    path_identity=identity)


def _set_mode_owner(address: Address, mode: int | None, owner: str | None) -> tuple[int, int]:
    """chmod/chown the fresh socket file; its (dev, ino).  ConfigError for an unknown user or group."""
    try:
        if owner:
            os.chown(address.path, *_owner_ids(owner))
        if mode is not None:
            os.chmod(address.path, mode)
    except (OSError, ConfigError) as exc:
        os.unlink(address.path)
        why = str(exc) if isinstance(exc, ConfigError) else f"cannot set mode/owner: {exc.strerror or exc}"
        raise ConfigError(f"bind {address}: {why}") from None
    st = os.stat(address.path)
    return (st.st_dev, st.st_ino)


def _owner_ids(owner: str) -> tuple[int, int]:
    """(uid, gid) for ``USER[:GROUP]`` or ``:GROUP`` (-1: unchanged); names or numbers."""
    user, _, group = owner.partition(":")
    try:
        uid = -1 if not user else int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ConfigError(f"unix_socket_owner: no such user {user!r}") from None
    try:
        gid = -1 if not group else int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"unix_socket_owner: no such group {group!r}") from None
    return uid, gid


def _socket_for(address: Address) -> socket.socket:
    if address.family == "unix":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
    family = infos[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return sock


def unlink_stale(path: str) -> None:
    """Remove a leftover socket file nobody listens on (never a regular file).

    Raises OSError: EEXIST when ``path`` is not a socket, EADDRINUSE when something listens
    on it (also used for the control socket, master/control.py).
    """
    if path.startswith("@") or not os.path.exists(path):
        return
    if not _is_socket_file(path):
        raise OSError(17, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(98, "Address already in use")


def _is_socket_file(path: str) -> bool:
    return stat.S_ISSOCK(os.stat(path).st_mode)


def _printable(sock: socket.socket, address: Address) -> str:
    if address.family == "unix":
        return str(address)
    host, port = sock.getsockname()[:2]
    return str(Address("tcp", host=host, port=port))


def bind_reuseport(address: str) -> socket.socket:
    """A worker's own non-blocking SO_REUSEPORT socket bound to ``address`` (not yet listening)."""
    addr = parse_address(address)
    if addr.family != "tcp":
        raise ConfigError(f"reuseport needs a TCP address, got {address!r}")
    sock = _socket_for(addr)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((addr.host, addr.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock



def migrate_req_enabled() -> bool | None:
    """net.ipv4.tcp_migrate_req: do closed reuseport listeners hand on their queue?"""
    with contextlib.suppress(OSError, ValueError), open(MIGRATE_SYSCTL) as f:
        return f.read().strip() == "1"
    return None
