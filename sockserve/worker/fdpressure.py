"""Fd pressure in a worker: stop taking connections before the fd table is full.

A worker near its RLIMIT_NOFILE takes no new connection (rr: it rejects hand-offs,
``Ack accepted=false``; shared/reuseport: it stops accepting, and the connection stays
in the kernel's queue for another worker) until ``RESUME_AT`` fds are free again; its
heartbeats say ``paused`` meanwhile (the master replaces a worker paused longer than
worker_timeout).  ``RESERVE`` fds stay for the app's own files and sockets.

Peers: libuv (Node) accepts and closes at once when out of fds (its "EMFILE trick"),
which resets the client; asyncio pauses its accept loop for a second. Here the
connection is never taken, so it is never lost.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("sockserve.worker")
RESERVE = 16  # fds kept free for the app (files, outgoing connections)
RESUME_AT = 2 * RESERVE  # free fds before a paused worker takes connections again
PROBE = 128  # free fds a probe counts up to
ACCEPT_BATCH = 64  # accepts per wake-up: one busy listener cannot starve the loop
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class FdBudget:
    """How many fds this process may still open; cheap to ask on every connection.

    Counting open fds (``/proc/self/fd``) costs ~14 µs per open fd (270 ms at 19 000), so
    the budget probes instead: it dups a spare fd up to ``PROBE`` times and closes the
    copies, which proves that many are free (~175 µs).  Between probes it subtracts the
    connections opened since; it probes again when that estimate nears ``RESERVE``, and at
    every heartbeat (``refresh``) to notice fds the app opened.
    """

    def __init__(self, on_pause: Callable[[], None]) -> None:
        self.paused = False
        self._on_pause = on_pause  # called each time the budget becomes paused
        self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # what probes dup
        self._known_free = 0  # fds known free at the last probe (at most PROBE)
        self._conns_then = 0  # open connections then
        self.refresh(0)

    def probe(self, conns: int, wanted: int = PROBE) -> int:
        """Free fds, counted up to ``wanted`` by duplicating the spare fd (held for µs)."""
        copies: list[int] = []
        try:
            while len(copies) < wanted:
                copies.append(os.dup(self._spare))
        except OSError:
            pass
        finally:
            for fd in copies:
                os.close(fd)
        self._known_free, self._conns_then = len(copies), conns
        return len(copies)

    def refresh(self, conns: int) -> None:
        """Probe again (every heartbeat): the app's own fds count too."""
        if not self.paused and self.probe(conns) < RESERVE:
            self.exhausted()

    def low(self, conns: int, taking: int = 1) -> bool:
        """True (and paused) when taking ``taking`` more connections would eat into RESERVE."""
        if self.paused:
            return True
        if self._known_free - (conns - self._conns_then) - taking >= RESERVE:
            return False
        if self.probe(conns) - taking < RESERVE:
            self.exhausted()
        return self.paused

    def exhausted(self) -> None:
        """The kernel said we are out of fds (MSG_CTRUNC, EMFILE), or we are near: paused."""
        if not self.paused:
            self.paused = True
            self._on_pause()

    def may_resume(self, conns: int) -> bool:
        """Probe a paused budget; True when it just left the paused state."""
        if self.paused and self.probe(conns, RESUME_AT) >= RESUME_AT:
            self.paused = False
            return True
        return False


class Acceptor:
    """Accepts on a listening socket (shared or own SO_REUSEPORT) while the budget allows.

    The loop's own accept (``create_server``) cannot be paused: uvloop's libuv resets the
    connections it cannot take. This one leaves them queued in the kernel instead.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, budget: FdBudget,
                 conns: Callable[[], int], serve: Callable[[socket.socket], object]) -> None:
        self.loop, self.sock, self.budget = loop, sock, budget
        self._conns, self._serve = conns, serve
        self._reading = False
        self.closed = False

    def start(self) -> None:
        if not self._reading and not self.closed and not self.budget.paused:
            self.loop.add_reader(self.sock.fileno(), self._accept)
            self._reading = True

    def stop(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.sock.fileno())
            self._reading = False

    def close(self) -> None:
        self.stop()
        self.closed = True
        self.sock.close()

    def _accept(self) -> None:
        for taken in range(ACCEPT_BATCH):  # connection_made has not run yet for those taken
            if self.budget.low(self._conns() + taken):
                self.stop()
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno == errno.EINVAL:  # not listening: the master shut it down (a stop)
                    self.stop()
                    return
                if exc.errno not in OUT_OF_FDS:
                    raise
                self.budget.exhausted()
                self.stop()
                return
            self._serve(conn)
