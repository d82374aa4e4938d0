"""Apps answering the addresses they were given, for the PROXY protocol tests (one per interface).

``asgi``: ``client server`` from the scope; ``wsgi``: ``REMOTE_ADDR:REMOTE_PORT SERVER_NAME:SERVER_PORT``;
``stream``: the writer's ``peername`` / ``sockname`` and ``proxy_peername``, after reading one line.
Each answers one line ``HOST:PORT HOST:PORT``.
"""

from __future__ import annotations

from typing import Any


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    client, server = scope["client"], scope["server"]
    body = f"{client[0]}:{client[1]} {server[0]}:{server[1]}\n".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = (f"{environ['REMOTE_ADDR']}:{environ['REMOTE_PORT']} "
            f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}\n").encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


async def stream(reader: Any, writer: Any) -> None:
    await reader.readline()
    peer, local = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
    proxy = writer.get_extra_info("proxy_peername")
    writer.write(f"{peer[0]}:{peer[1]} {local[0]}:{local[1]} via {proxy[0]}\n".encode())
    await writer.drain()
