"""Apps that record what they see while a worker stops, one line each in ``$MARKER_DIR/events``.

``app`` (ASGI, lifespan on): ``/slow?s=N`` sleeps N seconds but stops at ``http.disconnect``;
``/sse`` is an endless event stream that never reads ``receive()`` (it only ends when
cancelled); ``/sse-listening`` is one that stops at ``http.disconnect``.  ``stuck_shutdown``
blocks its lifespan shutdown (the event loop too), so only SIGKILL ends it.  ``stream``: an
asyncio-stream handler writing a line every 0.1 s forever.  ``slow_wsgi``: a 10 s WSGI request.
``slow_start``: a lifespan startup of 5 s.  ``stream_asleep``: a stream handler that only a cancel ends.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any
from urllib.parse import parse_qs


def mark(event: str) -> None:
    """Append ``event pid`` to $MARKER_DIR/events (O_APPEND: workers never interleave a line)."""
    directory = os.environ.get("MARKER_DIR")
    if directory:
        fd = os.open(os.path.join(directory, "events"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{event} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


async def lifespan(receive: Any, send: Any, stuck: bool = False, slow: bool = False) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            mark("lifespan.shutdown")
            if stuck:
                time.sleep(60)
            if slow:
                await asyncio.sleep(60)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["path"] == "/slow":
        await slow(scope, receive, send)
    elif scope["path"].startswith("/sse"):
        await sse(scope["path"] == "/sse-listening", receive, send)


async def slow_start(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Its lifespan startup takes 5 s."""
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(5)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
    else:
        await app(scope, receive, send)


async def slow_shutdown(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Its lifespan shutdown awaits 60 s (the event loop runs: the worker's budget cuts it)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send, slow=True)
    else:
        await app(scope, receive, send)


async def stuck_shutdown(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send, stuck=True)
    else:
        await app(scope, receive, send)


async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    seconds = float(parse_qs(scope["query_string"].decode()).get("s", ["10"])[0])
    mark("request")

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        mark("http.disconnect")

    watcher = asyncio.ensure_future(disconnected())
    done, _ = await asyncio.wait([watcher], timeout=seconds)
    if done:
        return
    watcher.cancel()
    body = f"slept {seconds}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def sse(listening: bool, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    mark("sse")
    stop = asyncio.Event()

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        mark("sse.disconnect")
        stop.set()

    watcher = asyncio.ensure_future(disconnected()) if listening else None
    try:
        while not stop.is_set():
            await send({"type": "http.response.body", "body": b"data: tick\n\n", "more_body": True})
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        mark("sse.cancelled")
        raise
    finally:
        if watcher is not None:
            watcher.cancel()


def slow_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI: 10 s in a thread nobody can cancel."""
    mark("request")
    time.sleep(10)
    start_response("200 OK", [("Content-Length", "5")])
    return [b"slept"]


async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    mark("stream")
    try:
        while True:
            writer.write(b"tick\n")
            await writer.drain()
            await asyncio.sleep(0.1)
    except (ConnectionError, RuntimeError):  # RuntimeError: uvloop's write on a closed transport
        mark("stream.closed")
    except asyncio.CancelledError:
        mark("stream.cancelled")
        raise


async def stream_asleep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An asyncio-stream handler that never looks at its connection: only a cancel ends it."""
    mark("stream")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        mark("stream.cancelled")
        raise
