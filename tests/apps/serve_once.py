"""Serve one request per uvicorn HTTP protocol class with the hello app; print what came back.

Run as ``python -m tests.apps.serve_once`` (from the repository root) with any
interpreter; prints one line per protocol: ``<Class> <chosen|forced> <status line> | <body>``.
"""

from __future__ import annotations

import asyncio
import socket

from sockserve.eventloop import new_event_loop
from sockserve.worker import apps


async def serve_once(http: type[asyncio.Protocol] | None) -> str:
    loop = asyncio.get_running_loop()
    adapter = apps.load_adapter(None, "auto", 1, loop)
    if http is not None:
        adapter = apps.AsgiAdapter(adapter.config.app, loop, protocol=http)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = await loop.create_server(adapter.protocol_factory, sock=sock)
    reader, writer = await asyncio.open_connection(*sock.getsockname())
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    server.close()
    await adapter.shutdown()
    head, _, body = data.partition(b"\r\n\r\n")
    how = "chosen" if http is None else "forced"
    status = head.splitlines()[0].decode()
    return f"{adapter.protocol_class.__name__} {how} {status} | {body.decode().strip()}"


async def main() -> None:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    for http in (None, H11Protocol):
        print(await serve_once(http), flush=True)


if __name__ == "__main__":
    new_event_loop().run_until_complete(main())
