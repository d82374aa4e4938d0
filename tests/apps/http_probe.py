"""ASGI app answering what the server told it, for the HTTP option tests.

``/scope``: JSON of client, scheme, root_path, path, http_version.
``/slow?s=N``: sleeps N seconds, then answers ``slept``.
``/boom``: raises (the server answers 500).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path.endswith("/boom"):
        raise RuntimeError("boom on purpose")
    if path.endswith("/slow"):
        await asyncio.sleep(float(parse_qs(scope["query_string"].decode()).get("s", ["1"])[0]))
        body = b"slept\n"
    else:
        body = json.dumps({"client": list(scope["client"] or []), "scheme": scope["scheme"],
                           "root_path": scope.get("root_path", ""), "path": path,
                           "tls_client_cert": bool(scope.get("extensions", {}).get("tls"))}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
