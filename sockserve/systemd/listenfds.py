"""Sockets inherited from systemd socket activation (``LISTEN_FDS``).

``parse_listen_env`` is the pure part (environment + pid in, ``(fd, name)``
pairs out); ``listen_fds`` opens and checks the real descriptors. Like
``sd_listen_fds(3)``: fds start at 3, ``LISTEN_PID`` must be ours, names come
from ``LISTEN_FDNAMES`` (``unknown`` when absent), the variables are unset.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from ..appmap import listener_keys

LISTEN_FDS_START = 3
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
UNNAMED = "unknown"  # systemd's name for an fd without FileDescriptorName=
AGENT = "agent"  # the HAProxy agent's socket (master/agent.py): the master's, never a worker's
MAX_LISTEN_FDS = 4096


class ListenFdsError(Exception):
    """Inherited sockets are unusable; ``str()`` is a one-line reason."""


@dataclass
class InheritedSocket:
    """One socket passed by systemd."""

    fd: int
    name: str  # from LISTEN_FDNAMES ("unknown" when unnamed)
    sock: socket.socket
    listening: bool  # False: a connected socket (Accept=yes, inetd mode)
    address: str  # local address: 127.0.0.1:8000, [::1]:8000, unix:/path, unix:@abstract
    key: str = ""  # what workers ask for: the name, or the address when unnamed/ambiguous


def parse_listen_env(environ: Mapping[str, str], pid: int) -> list[tuple[int, str]]:
    """``(fd, name)`` pairs described by ``environ`` for process ``pid``.

    Returns ``[]`` when no sockets were passed or they are meant for another
    process; raises ``ListenFdsError`` for malformed values.
    """
    pid_text = environ.get("LISTEN_PID")
    if pid_text is None:
        return []
    if not pid_text.strip().isdigit() or int(pid_text) <= 0:
        raise ListenFdsError(f"LISTEN_PID={pid_text!r} is not a process id")
    if int(pid_text) != pid:
        return []
    count = _parse_count(environ.get("LISTEN_FDS"))
    names_text = environ.get("LISTEN_FDNAMES")
    if names_text is None:
        names = [UNNAMED] * count
    else:
        names = names_text.split(":") if names_text or count else []
        if len(names) != count:
            raise ListenFdsError(
                f"LISTEN_FDNAMES={names_text!r} has {len(names)} names for LISTEN_FDS={count}"
            )
    return [(LISTEN_FDS_START + i, name or UNNAMED) for i, name in enumerate(names)]


def _parse_count(text: str | None) -> int:
    if text is None:
        return 0  # as sd_listen_fds: LISTEN_PID alone means no fds
    if not text.strip().isdigit():
        raise ListenFdsError(f"LISTEN_FDS={text!r} is not a non-negative number")
    count = int(text)
    if count > MAX_LISTEN_FDS:
        raise ListenFdsError(f"LISTEN_FDS={count} is more than {MAX_LISTEN_FDS} sockets")
    return count


def listen_fds(
    environ: MutableMapping[str, str] = os.environ, unset: bool = True
) -> list[InheritedSocket]:
    """Open the sockets systemd passed to this process (``[]`` if none).

    Every fd is checked to be a stream socket and made non-inheritable, so
    workers never receive it by accident. ``LISTEN_*`` is removed from
    ``environ`` when ``unset`` (even when the sockets were not ours).
    """
    try:
        pairs = _find_fds(environ)
    finally:
        if unset:
            for name in LISTEN_VARIABLES:
                environ.pop(name, None)
    found = [_open(fd, name) for fd, name in pairs]
    _assign_keys(found)
    return found


def _find_fds(environ: Mapping[str, str]) -> list[tuple[int, str]]:
    """python-systemd's parser for the process environment, ours otherwise."""
    if environ is not os.environ:
        return parse_listen_env(environ, os.getpid())
    try:
        from systemd.daemon import listen_fds_with_names
    except ImportError:
        return parse_listen_env(environ, os.getpid())
    try:
        named = listen_fds_with_names(False)
    except OSError:
        # malformed values raise here with a precise message; a bad fd is named by _open
        return parse_listen_env(environ, os.getpid())
    return sorted((fd, name or UNNAMED) for fd, name in named.items())


def _open(fd: int, name: str) -> InheritedSocket:
    """Wrap ``fd`` in a socket object after checking it is a stream socket."""
    label = f"LISTEN_FDS: fd {fd} ({name})"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise ListenFdsError(f"{label} is not open") from None
        if exc.errno == errno.ENOTSOCK:
            raise ListenFdsError(f"{label} is not a socket") from None
        raise ListenFdsError(f"{label}: {exc.strerror or exc}") from None
    try:
        kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        if kind != socket.SOCK_STREAM:
            raise ListenFdsError(f"{label} is a {_type_name(kind)} socket; sockserve serves stream sockets")
        if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            raise ListenFdsError(f"{label} has unsupported address family {sock.family!r}")
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        address = format_sockname(sock.family, sock.getsockname())
    except BaseException:
        sock.detach()  # leave the inherited fd as we found it
        raise
    os.set_inheritable(fd, False)
    return InheritedSocket(fd=fd, name=name, sock=sock, listening=listening, address=address)


def _type_name(kind: int) -> str:
    names = {socket.SOCK_DGRAM: "datagram", socket.SOCK_SEQPACKET: "seqpacket", socket.SOCK_RAW: "raw"}
    return names.get(kind, f"type-{kind}")


def format_sockname(family: int, sockname: object) -> str:
    """``127.0.0.1:8000``, ``[::1]:8000``, ``unix:/path`` or ``unix:@name``."""
    if family == socket.AF_UNIX:
        if isinstance(sockname, bytes):  # abstract (leading NUL) or unnamed
            text = sockname.lstrip(b"\0").decode(errors="replace")
            return f"unix:@{text}" if sockname.startswith(b"\0") else f"unix:{text}"
        return f"unix:{sockname}"
    host, port = sockname[0], sockname[1]  # type: ignore[index]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


def listener_name(fd_name: str) -> str:
    """A listener's name for an fd name: "" for ``unknown`` (no LISTEN_FDNAMES), else itself."""
    return "" if fd_name == UNNAMED else fd_name


def _assign_keys(found: list[InheritedSocket]) -> None:
    """Key = the fd name when named and unique among listeners, else the address
    (appmap.listener_keys)."""
    keys = listener_keys([(listener_name(item.name), item.address) for item in found])
    for item, key in zip(found, keys, strict=True):
        item.key = key
