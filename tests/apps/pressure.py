"""ASGI app for the fd-pressure and acks-first tests.

``/flood?n=N`` queues N user messages of ~32 KiB to the master (``worker.send``);
``/slow?s=S`` answers after S seconds; anything else answers ``worker <id>``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import sockserve

from .sample import respond

CHUNK = "x" * 32_000


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    query = parse_qs(scope["query_string"].decode())
    worker = sockserve.current_worker()
    if scope["path"] == "/flood":
        for _ in range(int(query.get("n", ["100"])[0])):
            worker.send(CHUNK)
        await respond(send, b"flooded\n")
    elif scope["path"] == "/slow":
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        await respond(send, b"slow done\n")
    else:
        await respond(send, f"worker {worker.id}\n".encode())
