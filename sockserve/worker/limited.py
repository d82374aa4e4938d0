"""The limits of worker/limits.py wrapped around one of uvicorn's protocol classes.

Per keep-alive request nothing of this runs but one short test in ``data_received``:
the timeouts are checked by one sweep per worker (worker/sweep.py) from what uvicorn's
protocol already holds, and the head size only while a head may be over the limit (a read
larger than a slice, a head still incomplete, requests queued).  Those reads take
``_slow_read``: slices of ``FEED_SLICE`` bytes, the incomplete head counted slice by
slice, each head parsed meanwhile checked whole by ``_guard_app`` before the app sees it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .sweep import Sweep, interval

log = logging.getLogger("sockserve.worker")
TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
TOO_LARGE_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
                 b"connection: close\r\n\r\n")
TOO_LARGE_START = {"type": "http.response.start", "status": 431,
                   "headers": [(b"content-length", b"0"), (b"connection", b"close")]}
EMPTY_BODY = {"type": "http.response.body", "body": b""}
MAX_PIPELINED = 32  # requests parsed and queued behind the one being answered, per connection
FEED_SLICE = 4096  # bytes handed to the parser at a time on the slow path
FIRST = object()  # head marker: bytes came before the connection's first request was parsed


def head_size(scope: dict[str, Any], root_path: str) -> int:
    """Bytes a parsed head took at least: ``M URL HTTP/1.1`` and ``name:value`` lines, CRLF ended."""
    query = scope.get("query_string") or b""
    url = len(scope.get("raw_path") or b"") - len(root_path.encode()) + (len(query) + 1 if query else 0)
    return url + 13 + sum(len(name) + len(value) + 3 for name, value in scope["headers"])


def head_fits(data: bytes, budget: int, before: bytes = b"") -> bool:
    """Whether a request head starting in ``data`` ends within ``budget`` bytes (or may still).

    Looks only for the blank line that ends a head (CRLF CRLF, or bare LF LF, which
    httptools accepts): a head that arrives whole in one read is bounded like one that
    trickles in. ``before``: the last bytes of the head's previous read (a blank line may
    straddle two reads). The parser itself stays uvicorn's.
    """
    if len(data) <= budget:
        return True
    window = before[-2:] + data[:max(budget, 0) + 1]
    return b"\n\r\n" in window or b"\n\n" in window


def h11_bounded(next_event: Any, max_size: int) -> Any:
    """h11's ``next_event`` that refuses a ``Request`` whose head is over ``max_size`` bytes.

    h11 bounds only a head it is still waiting for; a pipelined head it already holds whole
    is parsed at any size. Refused as h11's own errors are (uvicorn answers 400, closes).
    """
    import h11

    def bounded() -> Any:
        event = next_event()
        if isinstance(event, h11.Request) and len(event.target) + 13 + sum(
                len(name) + len(value) + 3 for name, value in event.headers) > max_size:
            raise h11.RemoteProtocolError("request head over max_header_size", error_status_hint=431)
        return event
    return bounded


def limited(protocol_class: type[asyncio.Protocol], limits: Any) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's httptools or h11 ``protocol_class`` enforcing ``limits``."""
    max_size = limits.max_header_size
    fast_max = min(FEED_SLICE, max_size)  # a read this long holds no head over max_size
    uvicorn_read = protocol_class.data_received
    uvicorn_answered = protocol_class.on_response_complete
    every = interval(limits.idle_timeout, limits.headers_timeout)
    sweeps: dict[Any, Sweep] = {}  # loop -> its sweep (one per worker; tests run several loops)
    h11 = None if hasattr(protocol_class, "on_header") else __import__("h11")

    class Limited(protocol_class):  # type: ignore[valid-type, misc]
        __slots__ = ("_opened", "_got_bytes", "_seen", "_seen_since", "_head", "_head_bytes", "_slow",
                     "_unparsed", "_refused", "_real_app", "_get_protocol")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._opened = 0.0  # loop time of connection_made
            self._got_bytes = False  # any byte read yet
            self._seen: Any = None  # head marker the last sweep saw (None: no head being read)
            self._seen_since = 0.0  # loop time that sweep saw it first
            self._head: Any = None  # the incomplete head whose bytes _head_bytes counts (its scope)
            self._head_bytes = 0
            self._slow = False  # reads take _slow_read: bytes wait unparsed, or a refusal waits its turn
            self._unparsed = b""  # read but not parsed: MAX_PIPELINED requests were queued
            self._refused = b""  # the answer a refused head gets once the requests before it are answered
            self._real_app = self.app
            self._get_protocol: Any = None  # the transport's get_protocol (a WebSocket upgrade swaps it)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._get_protocol = getattr(transport, "get_protocol", None)
            self._opened = self.loop.time()
            sweep = sweeps.get(self.loop)
            if sweep is None:
                sweeps.clear()  # a loop of the past (tests): its sweep ended with it
                sweep = sweeps[self.loop] = Sweep(self.loop, every)
            sweep.watch(self)
            if h11 is not None:  # bound each parsed head (h11 bounds only a head it waits for)
                self.conn.next_event = h11_bounded(self.conn.next_event, max_size)

        def connection_lost(self, exc: Exception | None) -> None:
            sweep = sweeps.get(self.loop)
            if sweep is not None:
                sweep.forget(self)
            super().connection_lost(exc)

        if h11 is None:  # httptools: a new scope per head (on_message_begin), its cycle once parsed
            def data_received(self, data: bytes) -> None:
                if self._slow or len(data) > fast_max or self.pipeline:
                    return self._slow_read(data)
                cycle = self.cycle
                if cycle is None:  # the connection's first request
                    if self.scope is not None:  # its head incomplete
                        return self._slow_read(data)
                    self._got_bytes = True
                elif cycle.scope is not self.scope:  # a later request's head incomplete
                    return self._slow_read(data)
                uvicorn_read(self, data)  # no head being read: one starts here, under max_size

            def _reading(self) -> Any:
                """The scope of a head begun and not parsed yet, else None."""
                scope, cycle = self.scope, self.cycle
                return scope if scope is not None and (cycle is None or cycle.scope is not scope) else None

            def _head_marker(self) -> Any:
                cycle = self.cycle
                if cycle is None:
                    return FIRST if self._got_bytes else None
                if cycle.scope is not self.scope:
                    return self.scope
                # bytes since the last answer (they cancel uvicorn's keep-alive timer) began no head
                idle = cycle.response_complete and not self.pipeline and self.timeout_keep_alive_task is None
                return cycle if idle else None

            def _pending(self) -> bool:
                return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

            def _parsed_bytes(self) -> int:
                return len(self.url) + 13 + sum(len(name) + len(value) + 3 for name, value in self.headers)

        else:  # h11: it bounds an incomplete head itself (h11_max_incomplete_event_size)
            def data_received(self, data: bytes) -> None:
                self._got_bytes = True
                if len(data) > fast_max and self.conn.their_state is h11.IDLE and not self._refused:
                    buffered = len(self.conn._receive_buffer)
                    if not head_fits(data, max_size - buffered, b"\n" if buffered else b""):
                        return self._refuse(TOO_LARGE_431, f"request head over max_header_size ({max_size} "
                                            "bytes, in one read)")
                uvicorn_read(self, data)

            def _pending(self) -> bool:
                return False  # h11 reads a head only once the answers before it are sent (IDLE)

            def _head_marker(self) -> Any:
                if self.conn.their_state is not h11.IDLE:
                    return None
                cycle = self.cycle
                if cycle is None:
                    return FIRST if self._got_bytes else None
                # a head buffered (it may have come behind the last request), or bytes since the
                # last answer that h11 took in without a head (they cancel the keep-alive timer)
                buffered = len(getattr(self.conn, "_receive_buffer", b""))
                return cycle if buffered or self.timeout_keep_alive_task is None else None

        def check(self, now: float) -> bool:
            """The sweep's look (worker/sweep.py): close past idle_timeout, 408 past headers_timeout."""
            if self.transport.is_closing() or self._handed_over():
                return False
            marker = self._head_marker()
            if marker is None:
                self._seen = None
                if self.cycle is None and not self._got_bytes and now - self._opened >= limits.idle_timeout:
                    self.transport.close()  # nothing was asked: nothing to answer
                    return False
                return True
            if marker is not self._seen:
                self._seen, self._seen_since = marker, now
            elif now - self._seen_since >= limits.headers_timeout and not self._pending():
                # (a head behind requests still being answered gets its 408 after their answers)
                self._refuse(TIMEOUT_408, f"request head not complete in {limits.headers_timeout:g}s")
                return False
            return True

        def _slow_read(self, data: bytes) -> None:
            """Parse ``data`` a slice at a time: count the incomplete head, bound the queue."""
            self._got_bytes = True
            if self._refused:
                return
            if self._unparsed:
                data, self._unparsed = self._unparsed + data, b""
            self.app = self._guard_app  # heads parsed below may be over max_size: checked whole
            try:
                self._feed(data)
            finally:
                self.app = self._real_app
            self._slow = bool(self._unparsed or self._refused)

        def _feed(self, data: bytes) -> None:
            cycle = self.cycle
            if len(data) > max_size and self._reading() is None and (cycle is None or not cycle.more_body) \
                    and not head_fits(data, max_size):  # a head over the limit in one read: not parsed
                return self._refuse_in_turn(f"request head over max_header_size ({max_size} bytes, one read)")
            for start in range(0, len(data), fast_max):
                if self.transport.is_closing() or self._handed_over() or self._refused:
                    return
                if len(self.pipeline) >= MAX_PIPELINED:
                    self._unparsed = data[start:]
                    return self._wait_for_answers()
                piece = data[start:start + fast_max]
                head = self._reading()
                if head is not None and head is not self._head:  # begun in an earlier read
                    self._head, self._head_bytes = head, self._parsed_bytes()
                budget = max_size - self._head_bytes
                if head is not None and len(piece) > budget and not head_fits(piece, budget, b"\n"):
                    return self._refuse_in_turn(f"request head over max_header_size ({max_size} bytes)")
                uvicorn_read(self, piece)
                after = self._reading()
                if after is not None:
                    if after is head:  # the whole slice was this head's
                        self._head_bytes += len(piece)
                    else:  # begun in this slice: what is parsed of it (a lower bound)
                        self._head, self._head_bytes = after, self._parsed_bytes()
                    if self._head_bytes > max_size:
                        return self._refuse_in_turn(f"request head over max_header_size ({max_size} bytes)")

        async def _guard_app(self, scope: Any, receive: Any, send: Any) -> None:
            """The app, unless the head it is called for was over max_size: 431, close (in turn)."""
            if scope.get("type") == "http" and head_size(scope, self.root_path) > max_size:
                log.debug("closing a connection: request head over max_header_size (parsed)")
                await send(TOO_LARGE_START)
                await send(EMPTY_BODY)
                return
            await self._real_app(scope, receive, send)

        def _refuse_in_turn(self, why: str) -> None:
            """431 now if nothing before it waits for an answer, else once all are answered."""
            if not self._pending():
                return self._refuse(TOO_LARGE_431, why)
            log.debug("refusing a connection's next head once earlier requests are answered: %s", why)
            self._refused, self._unparsed, self._slow = TOO_LARGE_431, b"", True
            self._wait_for_answers()

        def _wait_for_answers(self) -> None:
            """Read no more; ``_answered`` runs after each queued request's answer."""
            self._slow = True
            self.flow.pause_reading()
            cycles = [self.cycle] + [cycle for cycle, _ in self.pipeline]
            for cycle in cycles:
                if cycle is not None and not cycle.response_complete:
                    cycle.on_response = self._answered

        def _answered(self) -> None:
            uvicorn_answered(self)  # starts the next queued request, resumes reading
            if self.transport.is_closing():
                return
            if self._refused and not self._pending():
                return self._refuse(self._refused, "request head over max_header_size (in turn)")
            if self._unparsed and len(self.pipeline) < MAX_PIPELINED:
                data, self._unparsed = self._unparsed, b""
                self._slow_read(data)
            if self._pending() or self._unparsed:
                self.flow.pause_reading()  # requests still queued: read no more until they ran

        def _handed_over(self) -> bool:
            return self._get_protocol is not None and self._get_protocol() is not self

        def _refuse(self, answer: bytes, why: str) -> None:
            log.debug("closing a connection: %s", why)
            self._refused, self._slow = answer, True
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    Limited.__name__ = Limited.__qualname__ = f"Limited{protocol_class.__name__}"
    return Limited
