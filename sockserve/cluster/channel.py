"""The cluster channel: one SOCK_SEQPACKET socket end, fds by SCM_RIGHTS.

The only ``sendmsg``/``recvmsg`` in sockserve.  Used the same way by the
master (one channel per worker) and by a worker (its channel to the master).
Records are encoded and decoded by ``protocol``; a defect in what the peer
sent is reported to ``on_error`` (the peer's fault), never raised into the loop.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable

from . import protocol
from .protocol import Message, ProtocolError

_CMSG_SPACE = socket.CMSG_SPACE(protocol.MAX_FDS * array.array("i").itemsize)
# plain ints: flag arithmetic on the socket module's IntFlag members is slow on the hot path
_MSG_CTRUNC, _MSG_TRUNC, _MSG_CMSG_CLOEXEC = (int(socket.MSG_CTRUNC), int(socket.MSG_TRUNC),
                                              int(socket.MSG_CMSG_CLOEXEC))
_SOL_SOCKET, _SCM_RIGHTS = int(socket.SOL_SOCKET), int(socket.SCM_RIGHTS)


Sent = Callable[[], None] | None  # called once a record is in the socket


def socketpair() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end); both CLOEXEC, the worker end made inheritable by the spawner."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Channel:
    """Reads and writes protocol records on a non-blocking SEQPACKET socket.

    ``on_message(msg, fds)`` gets each decoded message and the fds that came
    with it (the receiver owns them).  ``on_close(reason)`` is called once:
    ``None`` at a clean EOF, else the reason (a protocol error or an OSError).
    With ``on_fault``, a malformed record is reported there and dropped, and
    reading goes on: the master still wants the acks a faulty worker sent
    before it is killed (see pool.py).  With ``on_fds_lost(msg, fds)``, a record whose fds
    the kernel dropped (MSG_CTRUNC: our fd table is full) is delivered there with the fds
    that did come, instead of being a protocol error (worker/runtime.py rejects them).

    Records sent ``urgent`` (acks) go ahead of every queued non-urgent record, so an ack
    never waits behind user messages or heartbeats; ``on_sent`` runs once the record is in
    the socket (on the wire to the peer), never if the channel closes first.
    """

    def __init__(self, sock: socket.socket, peer: str,
                 on_message: Callable[[Message, list[int]], None],
                 on_close: Callable[[str | None], None],
                 on_fault: Callable[[str], None] | None = None,
                 on_fds_lost: Callable[[Message, list[int]], None] | None = None) -> None:
        self.sock = sock
        self.peer = peer  # who sends what we read: "worker" or "master"
        self._on_message = on_message
        self._on_close = on_close
        self._on_fault = on_fault
        self._on_fds_lost = on_fds_lost
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: deque[tuple[bytes, list[int], bool, Sent]] = deque()
        self._urgent = 0  # urgent records at the head of the outbox
        self.closed = False
        self._buffer = memoryview(bytearray(protocol.MAX_RECORD + 1))  # reused: no 64 KiB alloc per read
        sock.setblocking(False)

    # ------------------------------------------------------------ lifecycle
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def close(self, reason: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        for _, fds, owned, _ in self._outbox:
            if owned:
                _close_fds(fds)
        self._outbox.clear()
        self._urgent = 0
        self.sock.close()
        self._on_close(reason)

    # ------------------------------------------------------------ writing
    def send(self, msg: Message, fds: list[int] | None = None, *, close_fds: bool = False,
             urgent: bool = False, on_sent: Sent = None) -> None:
        """Queue ``msg`` (with ``fds``) for the peer, in order (urgent ones first).

        With ``close_fds`` the channel closes the fds once they are sent (or
        dropped); otherwise the caller keeps them and they must stay open
        until sent.  ``on_sent()`` is called once the record is sent.
        """
        fds = fds or []
        if len(fds) != msg.nfds():
            raise ProtocolError(f"{type(msg).__name__} needs {msg.nfds()} fds, given {len(fds)}")
        record = protocol.encode(msg)
        if self.closed:
            if close_fds:
                _close_fds(fds)
            return
        if (self._urgent if urgent else self._outbox) or not self._try_send(record, fds, close_fds):
            self._queue((record, fds, close_fds, on_sent), urgent)
        elif on_sent is not None:
            on_sent()

    def _queue(self, item: tuple[bytes, list[int], bool, Sent], urgent: bool) -> None:
        if urgent:  # behind the urgent ones, ahead of the rest
            self._outbox.insert(self._urgent, item)
            self._urgent += 1
        else:
            self._outbox.append(item)
        if len(self._outbox) == 1 and self._loop is not None:
            self._loop.add_writer(self.sock.fileno(), self._writable)

    def _try_send(self, record: bytes, fds: list[int], close_fds: bool) -> bool:
        ancillary = [(_SOL_SOCKET, _SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([record], ancillary)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # peer gone: the reader sees EOF and closes
            if close_fds:
                _close_fds(fds)
            if self._loop is None:
                raise
            gone = isinstance(exc, (BrokenPipeError, ConnectionResetError))
            self._loop.call_soon(self.close, None if gone else f"send failed: {exc}")
            return True
        if close_fds:
            _close_fds(fds)
        return True

    def _writable(self) -> None:
        while self._outbox:
            record, fds, close_fds, on_sent = self._outbox[0]
            if not self._try_send(record, fds, close_fds):
                return
            self._outbox.popleft()
            self._urgent = max(0, self._urgent - 1)
            if on_sent is not None and not self.closed:
                on_sent()
        if self._loop is not None and not self.closed:
            self._loop.remove_writer(self.sock.fileno())

    @property
    def pending(self) -> int:
        """Records waiting for room in the socket buffer."""
        return len(self._outbox)

    # ------------------------------------------------------------ reading
    def _readable(self) -> None:
        self._read(64)  # bounded: let the loop breathe

    def read_remaining(self) -> None:
        """Deliver every record still queued (the peer has exited): nothing it said is lost."""
        while self._read(64):
            pass

    def _read(self, limit: int) -> bool:
        """Read up to ``limit`` records; True if more may be waiting."""
        for _ in range(limit):
            if self.closed:
                return False
            try:
                size, ancdata, flags, _ = self.sock.recvmsg_into(
                    [self._buffer], _CMSG_SPACE, _MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return False
            except ConnectionResetError:  # the peer died with records unread: an EOF
                self.close(None)
                return False
            except OSError as exc:
                self.close(f"receive failed: {exc}")
                return False
            fds = _fds_from(ancdata)
            if not size and not fds:
                self.close(None)
                return False
            self._deliver(self._buffer[:size].tobytes(), fds, flags)
        return True

    def _deliver(self, data: bytes, fds: list[int], flags: int) -> None:
        lost = bool(flags & _MSG_CTRUNC) and self._on_fds_lost is not None
        try:
            if flags & _MSG_CTRUNC and not lost:
                raise ProtocolError("fds truncated (MSG_CTRUNC): too many fds in one record")
            if flags & _MSG_TRUNC:
                raise ProtocolError(f"record longer than {protocol.MAX_RECORD} bytes")
            msg = protocol.decode(data, len(fds), self.peer, fds_lost=lost)
        except ProtocolError as exc:
            _close_fds(fds)
            if self._on_fault is None:
                self.close(f"protocol error: {exc}")
            else:
                self._on_fault(f"protocol error: {exc}")
            return
        if lost and self._on_fds_lost is not None:
            self._on_fds_lost(msg, fds)
        else:
            self._on_message(msg, fds)


def _fds_from(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - (len(data) % arr.itemsize)])
            fds.extend(arr)
    return fds


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
