"""PROXY protocol on a worker's connections: the header read before the protocol is set up.

``ProxyGate`` is what ``handed.py`` calls for a connection taken on a listener named in
``--proxy-protocol`` (rr hand-off or own accept alike): refuse a peer outside
``--forwarded-allow-ips``, read the header (proxyproto.py: peek, then take exactly its
bytes, so TLS or HTTP bytes after it stay in the socket), within ``idle_timeout`` seconds
in all, and give back a protocol factory whose protocols see the client's addresses:

- ``transport.get_extra_info("peername")`` / ``("sockname")``: the header's source and
  destination (``(host, port)``; IPv6 ``(host, port, 0, 0)``; a path for AF_UNIX), and
  ``("socket")``: the socket whose ``getpeername()`` / ``getsockname()`` say the same.  So
  uvicorn fills ASGI ``scope["client"]`` / ``scope["server"]`` (and a2wsgi ``REMOTE_ADDR`` /
  ``REMOTE_PORT``, the access log) from them, and a stream handler's
  ``writer.get_extra_info("peername")`` is the client's;
- ``("proxy_header")``: the ``proxyproto.Header``; ``("proxy_peername")``: the proxy's own
  address (the real TCP peer).

A LOCAL header (HAProxy's health checks) or UNSPEC / v1 UNKNOWN keeps the real endpoints,
as the spec says.  A refused connection is closed with one warning line; past
``LOG_BURST`` lines in ``LOG_WINDOW`` seconds they are counted, and the count told when the window ends.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from . import proxyproto
from .proxypolicy import TrustedPeers, expects

log = logging.getLogger("sockserve.worker")
LOG_WINDOW, LOG_BURST = 10.0, 5  # seconds; refusal lines logged per window (the rest counted)


class Refused(Exception):
    """A peer refused on a PROXY listener; ``str()`` says why."""


class ProxyGate:
    """The PROXY listeners of this worker and the header read on their connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: dict[str, Any]) -> None:
        self.loop = loop
        self.entries = tuple(config.get("proxy_protocol") or ())
        self.trusted = TrustedPeers(config.get("forwarded_allow_ips") or "127.0.0.1")
        self.timeout = float(config.get("idle_timeout", 10.0))
        self.names: dict[str, str] = dict(config.get("listeners") or {})  # key -> listener name
        self.keys: set[str] = set()  # listeners whose connections start with a header
        self.marked: set[int] = set()  # fds taken on them, not yet read
        self._window, self._logged, self._hushed = -LOG_WINDOW, 0, 0
        self.refused = 0

    def listener(self, key: str, address: str) -> None:
        """The master named a listener (its ServerReply): does it take PROXY headers?"""
        if self.entries and expects(self.entries, key, address, self.names.get(key, "")):
            self.keys.add(key)

    def mark(self, key: str, sock: socket.socket) -> None:
        """``sock`` was taken on ``key``: read its header before serving it."""
        if key in self.keys:
            self.marked.add(sock.fileno())

    async def admit(self, sock: socket.socket, factory: Callable[[], asyncio.BaseProtocol]
                    ) -> Callable[[], asyncio.BaseProtocol] | None:
        """For a ``mark``ed ``sock``: a factory whose protocols see the header's addresses;
        None: refused and closed."""
        self.marked.discard(sock.fileno())
        try:
            sock.setblocking(False)
            peer = sock.getpeername()
            if (peer[0] if isinstance(peer, tuple) else None) not in self.trusted:  # unix: only '*'
                raise Refused("peer is not in --forwarded-allow-ips")
            buf = read_queued(sock)  # most often the whole header is there already
            if proxyproto.remaining(buf):
                async with asyncio.timeout(self.timeout):
                    header = await read_header(self.loop, sock, buf)
            else:
                header = proxyproto.parse(buf)
        except TimeoutError:  # first: it is an OSError too
            self._refuse(sock, peer, f"no whole PROXY header within {self.timeout:g}s")
            return None
        except (OSError, EOFError) as exc:
            if not isinstance(exc, EOFError) or not exc.args[0]:  # left before sending a byte
                sock.close()  # (a port scan, a plain TCP health check): nothing to say
                log.debug("PROXY: the client left before its header: %s", exc)
                return None
            self._refuse(sock, peer, f"closed after {exc.args[0]} bytes of a PROXY header")
            return None
        except (Refused, proxyproto.HeaderError) as exc:
            self._refuse(sock, peer, str(exc))
            return None
        return proxied_factory(factory, header, sock)

    def _refuse(self, sock: socket.socket, peer: Any, why: str) -> None:
        """Close ``sock`` with one warning line (``LOG_BURST`` per ``LOG_WINDOW``, the rest counted)."""
        peer = _printable(peer)
        sock.close()
        self.refused += 1
        now = self.loop.time()
        if now - self._window >= LOG_WINDOW:
            self._window, self._logged = now, 0
        if self._logged < LOG_BURST:
            self._logged += 1
            log.warning("PROXY: connection from %s refused: %s", peer, why,
                        extra={"SOCKSERVE_EVENT": "proxy_refused", "REMOTE_ADDR": peer})
            return
        if not self._hushed:  # the count is told when this window ends
            self.loop.call_at(self._window + LOG_WINDOW, self._tell_hushed)
        self._hushed += 1

    def _tell_hushed(self) -> None:
        log.warning("PROXY: %d more connections refused in %gs (not logged one by one)", self._hushed,
                    LOG_WINDOW, extra={"SOCKSERVE_EVENT": "proxy_refused"})
        self._hushed = 0


async def read_header(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                      buf: bytes = b"") -> proxyproto.Header:
    """Read exactly one PROXY header from non-blocking ``sock`` (``buf``: its bytes read so far)."""
    while proxyproto.remaining(buf := read_queued(sock, buf)):
        await _readable(loop, sock)
    return proxyproto.parse(buf)


def read_queued(sock: socket.socket, buf: bytes = b"") -> bytes:
    """``buf`` plus the header's bytes queued in ``sock`` now (peek, then take only those).

    EOFError(bytes read) when the peer closed; HeaderError as soon as they cannot be a header.
    """
    while need := proxyproto.remaining(buf):
        try:
            peeked = sock.recv(need, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return buf
        if not peeked:
            raise EOFError(len(buf))
        buf += sock.recv(proxyproto.take(buf, peeked))  # queued already: all of it comes
    return buf


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fd = sock.fileno()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _printable(address: Any) -> str:
    if isinstance(address, tuple):
        return f"[{address[0]}]:{address[1]}" if ":" in address[0] else f"{address[0]}:{address[1]}"
    return f"unix:{address}" if address else "unix"


def _extra(header: proxyproto.Header, sock: socket.socket) -> dict[str, Any]:
    extra: dict[str, Any] = {"proxy_header": header, "proxy_peername": sock.getpeername()}
    if header.relayed:
        source, destination = header.source, header.destination
        if header.family == "AF_INET6":
            source, destination = (*source, 0, 0), (*destination, 0, 0)  # type: ignore[misc]
        extra["peername"], extra["sockname"] = source, destination
    return extra


def proxied_factory(factory: Callable[[], Any], header: proxyproto.Header,
                    sock: socket.socket) -> Callable[[], Any]:
    """``factory``'s protocols, each given a ``TransportView`` with ``header``'s addresses."""
    extra = _extra(header, sock)

    def make() -> Any:
        protocol = factory()

        def made(transport: asyncio.BaseTransport) -> None:
            del protocol.connection_made  # the class's again: no reference cycle is left
            protocol.connection_made(TransportView(transport, extra))

        protocol.connection_made = made
        return protocol

    return make


class TransportView:
    """A transport as its protocol sees it on a PROXY listener: ``extra`` first, the rest as is."""

    def __init__(self, transport: asyncio.BaseTransport, extra: dict[str, Any]) -> None:
        self._transport, self._extra = transport, extra
        if "peername" in extra:
            extra["socket"] = SocketView(transport.get_extra_info("socket"), extra["peername"],
                                         extra["sockname"])

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in self._extra:
            return self._extra[name]
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class SocketView:
    """The transport's socket, whose ``getpeername()`` / ``getsockname()`` are the header's."""

    def __init__(self, sock: Any, peername: Any, sockname: Any) -> None:
        self._sock, self._peername, self._sockname = sock, peername, sockname

    def getpeername(self) -> Any:
        return self._peername

    def getsockname(self) -> Any:
        return self._sockname

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
