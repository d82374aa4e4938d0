"""Connections the worker took, from the take to a set-up protocol (rr hand-offs, own accepts).

A worker owns a handed connection once it took the fd (its ``Ack`` says accepted); the
protocol is set up only after the ack is sent (``connect_accepted_socket``).  A
``Disconnect`` arriving in between must not find the worker idle: the drain first waits
until every taken connection is set up (``settled``: its ``connection_made`` has run), else
the worker exits holding connections it acked (a recycle under load lost 1-2 in 400 that way).

A plain connection is set up in the callback that sent its ack (or accepted it): this module
runs ``connect_accepted_socket`` as a Task would (``_step``), without the Task: its first
step makes the transport and protocol, the second ends when ``connection_made`` has run.  A
task per connection cost ~3 µs of worker CPU here (bench/worker_setup.py).  TLS and PROXY-header
connections keep a task each (``_serve``): they wait on the peer.

With per-listener apps (appset.py) a connection is set up with its listener's adapter:
``taken(sock, key)`` remembers the key until its ack is sent; ``accepted(sock, key)``.
"""

from __future__ import annotations

import _socket
import asyncio
import logging
import socket
from typing import Any

from .proxyread import ProxyGate

log = logging.getLogger("sockserve.worker")
SETTLE_POLL = 0.005  # seconds between looks while connections are being set up


class HandedSocket(socket.socket):
    """A handed connection's socket: ``family`` and ``type`` are the plain ints (equal to the
    ``AddressFamily`` / ``SocketKind`` members) without the enum lookup ``socket.socket`` does
    on each read; ``connect_accepted_socket`` reads them three times per connection (~2 µs
    here).  Apps under uvloop never see it (``get_extra_info("socket")`` is uvloop's own)."""

    __slots__ = ()
    family = property(_socket.socket.family.__get__)  # type: ignore[assignment]
    type = property(_socket.socket.type.__get__)  # type: ignore[assignment]


def socket_of(fd: int) -> socket.socket | None:
    """The socket of a handed fd, or None if it is not one (the worker refuses it): family,
    type and protocol read from the fd (``socket.socket(fileno=...)``)."""
    try:
        return HandedSocket(fileno=fd)
    except OSError:
        return None


class Handed:
    """Taken connections not yet set up (``pending``), and their set-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, adapter: Any, config: dict[str, Any]) -> None:
        self.loop, self.adapter, self.config = loop, adapter, config
        self.pending = 0
        self._for_key = getattr(adapter, "for_key", None)  # an AppSet: one adapter per listener
        self._keys: dict[socket.socket, str] = {}  # taken, ack not yet sent: the listener's key
        self.proxy = ProxyGate(loop, config)  # --proxy-protocol listeners: a header first

    def taken(self, sock: socket.socket | None = None, key: str | None = None) -> None:
        """A connection is ours from now on (its ack will say accepted); of listener ``key``."""
        self.pending += 1
        if sock is not None and key is not None:
            self.proxy.mark(key, sock)  # a --proxy-protocol listener's: its header first
            if self._for_key is not None:
                self._keys[sock] = key

    def accepted(self, sock: socket.socket, key: str | None = None) -> None:
        """Accepted on our own listener ``key`` (shared, reuseport): ours, set it up."""
        self.pending += 1
        if key is not None:
            self.proxy.mark(key, sock)
        self._start(sock, key)

    def serve_all(self, socks: list[socket.socket]) -> None:
        """Their acks are sent: set their protocols up."""
        for sock in socks:
            self._start(sock, self._keys.pop(sock, None))

    def _start(self, sock: socket.socket, key: str | None) -> None:
        """Set ``sock`` up: a plain connection at once, in this callback (no task: its transport
        and protocol exist when this returns, ``connection_made`` is scheduled); TLS or a PROXY
        header first in a task of its own (``_serve``)."""
        adapter = self.adapter if self._for_key is None else self._for_key(key)
        if adapter.ssl is not None or (self.proxy.marked and sock.fileno() in self.proxy.marked):
            self.loop.create_task(self._serve(sock, key))
            return
        try:
            coro = self.loop.connect_accepted_socket(adapter.protocol_factory, sock)
        except OSError as exc:
            self._failed(sock, exc)
            return
        self._step(coro, sock)

    def _step(self, coro: Any, sock: socket.socket) -> None:
        """Run ``coro`` (``connect_accepted_socket``) to its next wait, as a Task would; its
        first step creates the transport, the next ends once ``connection_made`` has run."""
        try:
            waiter = coro.send(None)
        except StopIteration:
            self.pending -= 1
        except OSError as exc:  # the client left before we could start
            self._failed(sock, exc)
        except Exception:
            self.pending -= 1
            log.exception("setting up a connection failed")
        else:
            if waiter is None:  # a bare yield (asyncio.sleep(0)): step again soon, as a Task does
                self.loop.call_soon(self._step, coro, sock)
            else:
                waiter.add_done_callback(lambda _: self._step(coro, sock))

    def _failed(self, sock: socket.socket, exc: OSError) -> None:
        sock.close()
        log.debug("handed-over connection failed: %s", exc)
        self.pending -= 1

    async def _serve(self, sock: socket.socket, key: str | None = None) -> None:
        adapter = self.adapter if self._for_key is None else self._for_key(key)
        try:
            factory = adapter.protocol_factory
            if sock.fileno() in self.proxy.marked:  # a PROXY listener's: its header first (proxyread.py)
                factory = await self.proxy.admit(sock, factory)
                if factory is None:
                    return  # refused and closed
            await self.loop.connect_accepted_socket(  # idle_timeout bounds a TLS handshake too
                factory, sock, ssl=adapter.ssl, ssl_handshake_timeout=(
                    float(self.config.get("idle_timeout", 10.0)) if adapter.ssl else None))
        except OSError as exc:  # the client left before we could start
            sock.close()
            log.debug("handed-over connection failed: %s", exc)
        finally:
            self.pending -= 1

    async def settled(self, timeout: float) -> None:
        """Until every taken connection is set up (at most ``timeout`` seconds)."""
        deadline = self.loop.time() + timeout
        while self.pending and self.loop.time() < deadline:
            await asyncio.sleep(SETTLE_POLL)
