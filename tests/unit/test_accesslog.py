"""Access records under journald: the fields python-systemd's JournalHandler sends.

In-process (the handler's ``sender_function`` captures what would reach
journald), with a real request on loopback through uvicorn's protocol.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest

from sockserve.access import format_access_line, request_facts
from sockserve.logs import make_journal_handler
from sockserve.settings import ACCESS_LOG_FORMAT, defaults
from sockserve.worker import apps

pytest.importorskip("systemd.journal")


def test_access_record_carries_journal_fields() -> None:
    sent: list[tuple[str, dict]] = []
    handler = make_journal_handler(5, sender_function=lambda MESSAGE, **f: sent.append((MESSAGE, f)))
    logger = logging.getLogger("sockserve.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        options = defaults() | {"access_log": True}
        adapter = apps.load_adapter("tests.apps.http_probe:app", "auto", 5, loop, options)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(adapter.protocol_factory, sock=sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(b"POST /scope?q=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await asyncio.wait_for(reader.read(), 5)
        writer.close()
        server.close()
        await adapter.shutdown()

    try:
        asyncio.run(main())
    finally:
        logger.removeHandler(handler)
    [(message, raw)] = sent
    fields = {k: str(v) for k, v in raw.items()}  # journald stores every value as text
    assert message.startswith("127.0.0.1:") and '"POST /scope?q=2 HTTP/1.1" 200 ' in message
    assert fields["REQUEST_METHOD"] == "POST" and fields["REQUEST_PATH"] == "/scope?q=2"
    assert fields["QUERY_STRING"] == "q=2" and fields["HTTP_STATUS"] == "200"
    assert int(fields["RESPONSE_BYTES"]) > 0 and int(fields["DURATION_US"]) > 0
    assert fields["SOCKSERVE_EVENT"] == "access" and fields["REMOTE_ADDR"].startswith("127.0.0.1:")
    assert fields["WORKER_ID"] == "5" and fields["WORKER_PID"] == str(os.getpid())
    assert fields["SYSLOG_IDENTIFIER"] == "sockserve"


def test_default_format_fills_every_documented_field() -> None:
    scope = {"client": ("10.0.0.1", 4000), "method": "GET", "path": "/api/a", "root_path": "/api",
             "query_string": b"x=1", "http_version": "1.1"}
    facts = request_facts(scope, 404, 12, 1500, 3)
    line = format_access_line(ACCESS_LOG_FORMAT, facts)
    assert line == '10.0.0.1:4000 - "GET /api/a?x=1 HTTP/1.1" 404 12 1.5ms'
