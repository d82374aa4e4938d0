"""Hello-world ASGI app for the peers (uvicorn, gunicorn), like sockserve's built-in one.

The body names the worker's pid, so the benchmark can count the per-worker split.
"""

from __future__ import annotations

import os


async def app(scope, receive, send):
    """Answer every HTTP request with ``hello world from worker N (pid P)``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = f"hello world from worker 0 (pid {os.getpid()})\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
