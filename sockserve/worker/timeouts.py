"""``--request-timeout S``: a request running longer is cut (gunicorn's ``--timeout``, per request).

ASGI (``RequestTimeout``, wrapped around the app uvicorn's protocol calls): at
``S`` seconds the request expires: a 504 goes out if the app had not started
its response, the app's pending and later ``receive()`` return
``http.disconnect`` (what it sees when a client leaves), its later ``send()``
calls are dropped, and ``CANCEL_GRACE`` seconds later it is cancelled if it
has not returned.  A WSGI app runs in a thread that cannot be cancelled: its
request still gets the 504, and the worker asks to be recycled (``on_stuck``),
so the stuck thread leaves with the process after its successor listens.
Stream handlers are cancelled at ``S`` and their connection closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sockserve.worker")
CANCEL_GRACE = 1.0  # seconds between http.disconnect and cancelling the app
DISCONNECT = {"type": "http.disconnect"}
BODY = b"Gateway Timeout: the request took longer than request_timeout\n"


class _Request:
    """One request's view of time: wrapped ``receive``/``send``, expiry."""

    def __init__(self, receive: Any, send: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._receive, self._send = receive, send
        self.expired = loop.create_future()
        self.started = False

    async def receive(self) -> dict[str, Any]:
        if self.expired.done():
            return DISCONNECT
        get = asyncio.ensure_future(self._receive())
        await asyncio.wait((get, self.expired), return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        return DISCONNECT

    async def send(self, message: dict[str, Any]) -> None:
        if self.expired.done():
            return  # the client got its 504 (or the cut) already
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def expire(self) -> None:
        """The deadline passed: 504 unless a response started, then disconnect."""
        answer = not self.started
        self.started = True
        self.expired.set_result(None)
        if answer:
            headers = [(b"content-type", b"text/plain; charset=utf-8"),
                       (b"content-length", str(len(BODY)).encode()), (b"connection", b"close")]
            try:
                await self._send({"type": "http.response.start", "status": 504, "headers": headers})
                await self._send({"type": "http.response.body", "body": BODY})
            except Exception as exc:  # the client left meanwhile (uvicorn raises OSError or its own)
                log.debug("504 not sent: %s", exc)


class RequestTimeout:
    """ASGI middleware: HTTP requests may run ``timeout`` seconds (lifespan passes through).

    ``on_stuck(path)`` is called when a request expires in an app that cannot be
    cancelled (``cancellable=False``: WSGI in a thread).
    """

    def __init__(self, app: Any, timeout: float, *, cancellable: bool = True,
                 on_stuck: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self.cancellable = cancellable
        self.on_stuck = on_stuck
        self.expired = 0  # requests cut so far

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        request = _Request(receive, send, loop)
        timer = loop.call_later(self.timeout, self._expire, request, scope, loop)
        try:
            async with asyncio.timeout(self.timeout + CANCEL_GRACE) as deadline:
                await self.app(scope, request.receive, request.send)
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own TimeoutError
        finally:
            timer.cancel()

    def _expire(self, request: _Request, scope: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.expired += 1
        path = scope.get("path", "")
        log.warning("request %s %s cut after request_timeout %gs%s", scope.get("method", ""), path,
                    self.timeout, "" if self.cancellable else " (a thread is stuck: recycling the worker)",
                    extra={"SOCKSERVE_EVENT": "request_timeout"})
        loop.create_task(request.expire())
        if not self.cancellable and self.on_stuck is not None:
            self.on_stuck(path)


def stream_timeout(handler: Callable[..., Any], timeout: float) -> Callable[..., Any]:
    """A stream handler cancelled after ``timeout`` seconds (its connection is then closed)."""

    async def timed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(timeout) as deadline:
                await handler(reader, writer)
        except TimeoutError:
            if not deadline.expired():
                raise
            log.warning("stream connection cut after request_timeout %gs", timeout,
                        extra={"SOCKSERVE_EVENT": "request_timeout"})

    return timed
