"""WSGI apps: a2wsgi's WSGIMiddleware (uvicorn's when a2wsgi is missing) with ``threads``.

A request body sent with ``Transfer-Encoding: chunked`` has no Content-Length;
Flask reads such a body only with ``wsgi.input_terminated`` and Django never
does.  ``ChunkedBodyMiddleware`` therefore reads it whole (up to
``MAX_CHUNKED_BODY`` bytes, else 413) and hands the adapter a request with a
Content-Length, as nginx's request buffering and mod_wsgi do; a body with a
Content-Length streams through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_CHUNKED_BODY = 64 * 1024 * 1024  # bytes of one chunked request body a WSGI app may get


def wrap_wsgi(app: Callable[..., Any], threads: int = 10) -> Any:
    """An ASGI app running the WSGI ``app`` on ``threads`` threads per worker."""
    try:
        from a2wsgi import WSGIMiddleware
    except ImportError:
        from uvicorn.middleware.wsgi import WSGIMiddleware
    return ChunkedBodyMiddleware(WSGIMiddleware(app, workers=threads))


class ChunkedBodyMiddleware:
    """Gives a length-less (chunked) request body a Content-Length by reading it first."""

    def __init__(self, app: Any, limit: int = MAX_CHUNKED_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        names = {name.lower() for name, _ in scope.get("headers", ())} if scope["type"] == "http" else set()
        if b"content-length" in names or b"transfer-encoding" not in names:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before the body ended
            body += message.get("body", b"")
            if len(body) > self.limit:
                await _too_large(send, self.limit)
                return
            if not message.get("more_body", False):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"transfer-encoding"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Any) -> Any:
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict[str, Any]:
        return pending.pop() if pending else await receive()

    return replayed


async def _too_large(send: Any, limit: int) -> None:
    text = f"request body over {limit} bytes\n".encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text})
