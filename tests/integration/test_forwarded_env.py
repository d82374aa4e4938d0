"""``FORWARDED_ALLOW_IPS`` in the environment: the default of ``--forwarded-allow-ips``, as in
uvicorn and gunicorn (below the command line, ``SOCKSERVE_FORWARDED_ALLOW_IPS`` and the file).

A uvicorn user's unit with ``Environment=FORWARDED_ALLOW_IPS=...`` was silently ignored: the
worker passed sockserve's own default (127.0.0.1) to uvicorn, which then never read it.
"""

from __future__ import annotations

import socket

import pytest
from workerharness import read_response

APP = "tests.apps.proxy_probe:asgi"  # answers "client server" from the ASGI scope


def client_seen(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n"
                     b"Connection: close\r\n\r\n")
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode().split()[0].rsplit(":", 1)[0]


@pytest.mark.parametrize(("args", "env", "client"), [
    ((), {}, "203.0.113.7"),  # 127.0.0.1 trusted by default
    ((), {"FORWARDED_ALLOW_IPS": "10.9.9.9"}, "127.0.0.1"),  # the loopback proxy no longer trusted
    (("--forwarded-allow-ips", "127.0.0.1"), {"FORWARDED_ALLOW_IPS": "10.9.9.9"}, "203.0.113.7"),
    ((), {"FORWARDED_ALLOW_IPS": "10.9.9.9", "SOCKSERVE_FORWARDED_ALLOW_IPS": "*"}, "203.0.113.7"),
])
def test_forwarded_allow_ips_from_the_environment_is_the_default(start_server, args, env, client):
    server = start_server(APP, "--workers", "1", *args, env=env)
    assert client_seen(server.port) == client
