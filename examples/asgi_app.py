"""A small ASGI app: GET / says hello, POST /echo returns the body.

    sockserve --workers 2 examples.asgi_app:app
"""

import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    if scope["path"] == "/echo":
        answer, kind = body, b"application/octet-stream"
    else:
        answer, kind = json.dumps({"hello": "world", "pid": os.getpid()}).encode(), b"application/json"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
    await send({"type": "http.response.body", "body": answer})
