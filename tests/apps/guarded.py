"""Apps for the guards tests (issue 13): slow, stuck, memory-hungry.

What an app saw is written to the file named by ``$GUARDS_SEEN`` (one line per event),
so a test can read it from outside the worker process.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

HELD: list[bytearray] = []  # memory /grow keeps


def _seen(line: str) -> None:
    path = os.environ.get("GUARDS_SEEN")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def _respond(send: Any, body: bytes, status: int = 200) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI. ``/wait``: waits up to 10 s for http.disconnect; ``/sleep``: sleeps 10 s;
    ``/grow``: holds 64 MiB more; ``/pause``: 50 ms; anything else: ``pid <pid>``."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/wait":
        await receive()  # the (empty) body
        try:
            message = await asyncio.wait_for(receive(), 10)
            _seen(f"wait {message['type']}")
        except TimeoutError:
            _seen("wait nothing")
        return
    if path == "/sleep":
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            _seen("sleep cancelled")
            raise
        await _respond(send, b"slept\n")
        return
    if path == "/grow":
        HELD.append(bytearray(64 * 1024 * 1024))  # zero-filled pages: touched so they count in RSS
        for block in HELD[-1:]:
            block[::4096] = b"x" * len(block[::4096])
    elif path == "/pause":
        await asyncio.sleep(0.05)
    await _respond(send, f"pid {os.getpid()}\n".encode())


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI. ``/stuck``: blocks its thread for 30 s; anything else: ``pid <pid>``."""
    if environ["PATH_INFO"] == "/stuck":
        time.sleep(30)
    body = f"pid {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
