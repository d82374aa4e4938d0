"""HTTP limits: what one client may hold in a worker, and for how long.

uvicorn's protocol classes parse (httptools or h11); this module only adds timers and
a byte count around them, and sets h11's own head-size knob.  uvicorn's
``timeout_keep_alive`` and ``limit_concurrency`` are passed by worker/http.py.

| setting | default | past it | from |
|---|---|---|---|
| ``idle_timeout`` | 10 s | a connection silent since it opened is closed | nginx ``client_header_timeout`` |
| ``headers_timeout`` | 60 s | ``408 Request Timeout``, close | Node ``server.headersTimeout`` |
| ``max_header_size`` | 16 KiB, any reads | ``431`` (h11, split: ``400``) | Node ``--max-http-header-size`` |
| ``MAX_PIPELINED`` | 32 queued requests | reading pauses until answered | sockserve (uvicorn: none) |
| ``timeout_keep_alive`` | 5 s | an idle keep-alive connection is closed | uvicorn ``timeout_keep_alive`` |
| ``limit_concurrency`` | none | ``503 Service Unavailable`` | uvicorn ``limit_concurrency`` |

``headers_timeout`` runs from the first byte of each request (a keep-alive
connection's later requests too) until its head is parsed; bytes trickling in
(slowloris) do not extend it. Stream (``reader, writer``) apps get none of these:
sockserve does not know their protocol.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sockserve.worker")
TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
TOO_LARGE_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n"
                 b"connection: close\r\n\r\n")

MAX_PIPELINED = 32  # requests parsed and queued behind the one being answered, per connection
FEED_SLICE = 4096  # bytes handed to the parser at a time while requests are queued


@dataclass(frozen=True)
class HttpLimits:
    idle_timeout: float = 10.0  # seconds before a new connection's first byte
    headers_timeout: float = 60.0  # seconds from a request's first byte to the end of its head
    max_header_size: int = 16 * 1024  # bytes of one request head

    @classmethod
    def from_worker_config(cls, config: dict[str, Any]) -> HttpLimits:
        """The limits in SOCKSERVE_WORKER_CONFIG (absent keys: the defaults)."""
        return cls(**{k: config[k] for k in cls.__dataclass_fields__ if config.get(k) is not None})


def apply(adapter: Any, limits: HttpLimits) -> None:
    """Bound an ``AsgiAdapter``'s connections: h11's head size, the protocol class wrapped.

    A ``StreamAdapter`` (no ``protocol_class``) is left as it is; an ``AppSet``'s adapters
    each get the limits.
    """
    for one in getattr(adapter, "adapters", ()):
        apply(one, limits)
    if not hasattr(adapter, "protocol_class"):
        return
    config = adapter.config
    if "h11_max_incomplete_event_size" in inspect.signature(type(config)).parameters:
        config.h11_max_incomplete_event_size = limits.max_header_size  # uvicorn >= 0.20
    adapter.protocol_class = guarded(adapter.protocol_class, limits)


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


def guarded(protocol_class: type[asyncio.Protocol], limits: HttpLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's ``protocol_class`` that enforces ``limits`` on each connection.

    Uses only what both uvicorn protocols have: ``transport``, and ``cycle`` (set when a
    request head is parsed; ``cycle.response_complete`` once answered).
    """

    max_size = limits.max_header_size  # read per request: a local is cheaper than the attribute

    class Guarded(protocol_class):  # type: ignore[valid-type, misc]
        # Per request this wrapper runs on every read and parser callback: its state is in slots
        # (uvicorn's protocol already holds 27 instance attributes), its timer is reused (_arm),
        # the loop is looked up once.  Wrapping cost ~15 µs CPU a keep-alive request on the
        # bench box before (the keep-alive regression of issue 14), ~7 after: bench/RESULTS.md.
        __slots__ = ("_limit_timer", "_timer_due", "_deadline", "_on_expiry", "_head_of", "_head_bytes",
                     "_in_head", "_head_end", "_head_refused", "_unparsed", "_parsed_head", "_loop_",
                     "_get_protocol")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # asyncio.get_running_loop() costs a getpid() system call on CPython < 3.12: once here
            self._loop_ = asyncio.get_running_loop()
            self._get_protocol: Any = None  # the transport's get_protocol (a WebSocket upgrade swaps it)
            self._limit_timer: asyncio.TimerHandle | None = None  # the one loop timer, due at _timer_due
            self._timer_due = 0.0
            self._deadline: float | None = None  # loop time the armed limit expires at; None: disarmed
            self._on_expiry: Any = None
            self._head_of: Any = None  # the cycle before the head being read (a sentinel while idle)
            self._head_bytes = 0
            self._in_head = False
            self._head_end = b""  # the last bytes of the head read so far
            self._head_refused = False  # a pipelined head over max_header_size waits for its 431
            self._unparsed = b""  # bytes read but not parsed yet: MAX_PIPELINED requests were waiting
            self._parsed_head = 0  # httptools: bytes of the head being parsed (URL, names, values)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._get_protocol = getattr(transport, "get_protocol", None)
            self._arm(limits.idle_timeout, self._idle_expired)
            if hasattr(getattr(self, "conn", None), "next_event"):  # h11: bound each parsed head
                self.conn.next_event = h11_bounded(self.conn.next_event, limits.max_header_size)

        def data_received(self, data: bytes) -> None:
            if not self._in_head and (self.cycle is None or self.cycle.response_complete):
                self._in_head, self._head_of, self._head_bytes, self._head_end = True, self.cycle, 0, b""
                self._arm(limits.headers_timeout, self._head_expired)
            if self._in_head and len(data) > max_size - self._head_bytes and not head_fits(
                    data, max_size - self._head_bytes, self._head_end):
                self._refuse(TOO_LARGE_431, "request head over max_header_size "
                             f"({limits.max_header_size} bytes, in one read)")
                return
            self._feed(data)
            if self._deadline is None:  # not timing (expired, or the head is parsed)
                return
            if self._handed_over():
                self._disarm()  # upgraded (WebSocket): the connection is not ours to time any more
                return
            if not self._in_head or self.transport.is_closing():
                return
            if self.cycle is not self._head_of:  # the head is parsed
                self._in_head = False
                self._disarm()
            else:
                self._head_bytes += len(data)
                self._head_end = data[-2:]
                if self._head_bytes > limits.max_header_size:
                    self._refuse(TOO_LARGE_431, "request head over max_header_size "
                                 f"({limits.max_header_size} bytes)")

        if hasattr(protocol_class, "on_header"):  # httptools: its callbacks give each head's size
            def on_message_begin(self) -> None:
                self._parsed_head = 0
                super().on_message_begin()

            def on_url(self, url: bytes) -> None:
                self._parsed_head += len(url) + 13  # at least "M URL HTTP/1.1\r\n": never over the bytes
                if self._parsed_head > max_size:
                    self._head_over()
                super().on_url(url)

            def on_header(self, name: bytes, value: bytes) -> None:
                self._parsed_head += len(name) + len(value) + 3  # "name:value\r\n"
                if self._parsed_head > max_size:
                    self._head_over()
                super().on_header(name, value)

            def on_headers_complete(self) -> None:
                if self._parsed_head <= max_size:
                    super().on_headers_complete()

            def _head_over(self) -> None:
                """A later pipelined head in the same read is bounded too: 431 now if it is the
                next answer, else once the requests before it are answered (answers in order)."""
                if not self._head_refused:
                    self._head_refused = True
                    if self.cycle is None or self.cycle.response_complete:
                        self._refuse(TOO_LARGE_431, "request head over max_header_size (parsed)")
                    else:
                        self.flow.pause_reading()

        def _feed(self, data: bytes) -> None:
            """Parse ``data`` in slices, keeping the rest unparsed once MAX_PIPELINED requests wait.

            httptools' uvicorn queues every pipelined request a read holds (one 256 KiB read:
            ~9,000 queued request cycles, ~9 MB); h11 holds them unparsed in its own buffer.
            """
            pipeline = getattr(self, "pipeline", None)
            if pipeline is None or (
                    not pipeline and 0 < len(data) <= FEED_SLICE and not self._stop_feeding()):
                super().data_received(data)  # one slice, nothing queued: the loop below in short
                return
            for start in range(0, len(data), FEED_SLICE):
                if len(pipeline) >= MAX_PIPELINED or self._stop_feeding():
                    break
                super().data_received(data[start:start + FEED_SLICE])
            else:
                return
            if not self._stop_feeding():
                self._unparsed = data[start:]
                self.flow.pause_reading()

        def _stop_feeding(self) -> bool:
            return self.transport.is_closing() or self._handed_over() or self._head_refused

        def on_response_complete(self) -> None:
            queued = bool(getattr(self, "pipeline", None))
            super().on_response_complete()  # resumes reading, starts the next queued request
            if self.transport.is_closing():
                return
            if self._head_refused:  # a later head was too large: answer it once its turn comes
                if queued:
                    self.flow.pause_reading()
                else:
                    self._refuse(TOO_LARGE_431, "request head over max_header_size (pipelined)")
                return
            if self._unparsed and len(self.pipeline) < MAX_PIPELINED:
                data, self._unparsed = self._unparsed, b""
                self.data_received(data)
            if getattr(self, "pipeline", None) or self._unparsed:
                self.flow.pause_reading()  # requests still queued: read no more until they ran

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._limit_timer is not None:
                self._limit_timer.cancel()
                self._limit_timer = None
            super().connection_lost(exc)

        def _arm(self, seconds: float, callback: Any) -> None:
            """``callback()`` in ``seconds`` unless disarmed or re-armed first.

            One loop timer per connection, kept across re-arms: a keep-alive connection arms
            headers_timeout at every request, and a timer created and cancelled per request is
            a TimerHandle and two libuv calls each time.  A timer due before the deadline
            re-arms itself when it fires (``_expire``); one due after it is replaced.
            """
            loop = self._loop_
            self._deadline, self._on_expiry = loop.time() + seconds, callback
            if self._limit_timer is not None and self._timer_due <= self._deadline:
                return
            if self._limit_timer is not None:
                self._limit_timer.cancel()
            self._timer_due = self._deadline
            self._limit_timer = loop.call_at(self._deadline, self._expire)

        def _disarm(self) -> None:
            self._deadline = None  # a pending timer finds nothing to do when it fires

        def _expire(self) -> None:
            self._limit_timer = None
            if self._deadline is None:
                return
            loop = self._loop_
            if loop.time() < self._deadline:  # armed again since: wait for the new deadline
                self._timer_due = self._deadline
                self._limit_timer = loop.call_at(self._deadline, self._expire)
                return
            self._deadline = None
            self._on_expiry()

        def _handed_over(self) -> bool:
            return self._get_protocol is not None and self._get_protocol() is not self

        def _idle_expired(self) -> None:
            if self._handed_over() or self._in_head or self.cycle is not None:
                return
            if not self.transport.is_closing():
                self.transport.close()  # nothing was asked: nothing to answer

        def _head_expired(self) -> None:
            if not self._handed_over() and self._in_head and self.cycle is self._head_of:
                self._refuse(TIMEOUT_408, f"request head not complete in {limits.headers_timeout:g}s")

        def _refuse(self, answer: bytes, why: str) -> None:
            log.debug("closing a connection: %s", why)
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Limited{protocol_class.__name__}"
    return Guarded
