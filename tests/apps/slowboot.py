"""A test app whose import and lifespan startup are controlled from outside, for lifecycle tests.

SLOWBOOT_IMPORT_SLEEP / SLOWBOOT_STARTUP_SLEEP: seconds the import / lifespan startup sleeps;
SLOWBOOT_SLEEP_FILE: a file holding the import's sleep (read at each import, so a reload sees
a new value); SLOWBOOT_FAIL_FILE: while that file exists the import raises (app unimportable);
SLOWBOOT_IMPORT_EXIT: ``sys.exit(code)`` during the import.  Answers like the hello app.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
import time
from typing import Any


def _seconds(name: str) -> float:
    return float(os.environ.get(name) or 0)


_sleep = _seconds("SLOWBOOT_IMPORT_SLEEP")
if os.environ.get("SLOWBOOT_SLEEP_FILE"):
    _path = pathlib.Path(os.environ["SLOWBOOT_SLEEP_FILE"])
    _sleep = float(_path.read_text() or 0) if _path.exists() else _sleep
time.sleep(_sleep)
if os.environ.get("SLOWBOOT_IMPORT_EXIT"):
    sys.exit(int(os.environ["SLOWBOOT_IMPORT_EXIT"]))
if os.environ.get("SLOWBOOT_FAIL_FILE") and pathlib.Path(os.environ["SLOWBOOT_FAIL_FILE"]).exists():
    raise RuntimeError("the app is mid-deploy (SLOWBOOT_FAIL_FILE exists)")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(_seconds("SLOWBOOT_STARTUP_SLEEP"))
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    query = scope["query_string"].decode()
    if query.startswith("s="):
        await asyncio.sleep(float(query[2:]))
    body = f"hello world from worker {os.environ.get('SOCKSERVE_WORKER_ID')} (pid {os.getpid()})\n".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
