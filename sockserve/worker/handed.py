"""Connections the worker took, from the take to a set-up protocol (rr hand-offs, own accepts).

A worker owns a handed connection once it took the fd (its ``Ack`` says accepted); the
protocol is set up only after the ack is sent (``connect_accepted_socket``, a task).  A
``Disconnect`` arriving in between must not find the worker idle: the drain first waits
until every taken connection is set up (``settled``), else the worker exits holding
connections it acked (a recycle under load lost 1-2 in 400 that way).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

log = logging.getLogger("sockserve.worker")
SETTLE_POLL = 0.005  # seconds between looks while connections are being set up


class Handed:
    """Taken connections not yet set up (``pending``), and their set-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, adapter: Any, config: dict[str, Any]) -> None:
        self.loop, self.adapter, self.config = loop, adapter, config
        self._pick = getattr(adapter, "pick", lambda sock: adapter)  # worker/keyed.py: one app per listener
        self.pending = 0

    def taken(self) -> None:
        """A connection is ours from now on (its ack will say accepted)."""
        self.pending += 1

    def accepted(self, sock: socket.socket) -> None:
        """Accepted on our own listener (shared, reuseport): ours, set it up."""
        self.pending += 1
        self.loop.create_task(self._serve(sock))

    def serve_all(self, socks: list[socket.socket]) -> None:
        """Their acks are sent: set their protocols up."""
        for sock in socks:
            self.loop.create_task(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        adapter = self._pick(sock)
        try:
            await self.loop.connect_accepted_socket(  # idle_timeout bounds a TLS handshake too
                adapter.protocol_factory, sock, ssl=adapter.ssl, ssl_handshake_timeout=(
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
