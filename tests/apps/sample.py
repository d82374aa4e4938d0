"""Small apps of each interface, for the worker tests."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

LIFESPAN_EVENTS: list[str] = []  # what the lifespan app saw, in this process


async def respond(send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: answers ``asgi <path>``; honours lifespan."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            LIFESPAN_EVENTS.append(message["type"])
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = f"asgi {scope['path']} lifespan={','.join(LIFESPAN_EVENTS)}\n".encode()
    await respond(send, body)


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: sleeps ``?s=`` seconds, then answers ``slept <s>``."""
    if scope["type"] != "http":
        return
    seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["0"])[0])
    await asyncio.sleep(seconds)
    await respond(send, f"slept {seconds}\n".encode())


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI: answers ``wsgi <path>``."""
    body = f"wsgi {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def stream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Stream: echoes one line back upper-cased."""
    line = await reader.readline()
    writer.write(line.upper())
    await writer.drain()


NOT_AN_APP = 42


async def three_and_more(a: Any, b: Any, c: Any, d: Any) -> None:
    """Fits no interface (four arguments)."""


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: at lifespan startup, echoes every master message back with the worker id."""
    if scope["type"] != "lifespan":
        await asgi_app(scope, receive, send)
        return
    from sockserve.worker import current_worker

    worker = current_worker()
    assert worker is not None
    worker.on("message", lambda payload: worker.send({"echo": payload, "id": worker.id}))
    await asgi_app(scope, receive, send)


async def failing_startup_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI: its lifespan startup fails."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


class AsgiInstance:
    """An ASGI app as an object with an async ``__call__`` (like Starlette)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asgi_app(scope, receive, send)


class WsgiInstance:
    """A WSGI app as an object (like Flask)."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return wsgi_app(environ, start_response)
