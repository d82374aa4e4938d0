"""PROXY protocol through a real HAProxy (Debian's haproxy, started by the test on loopback).

Three addresses keep the hops apart: the client connects from 127.0.0.2, HAProxy connects
to sockserve from 127.0.0.3 (``source``), and the app must see 127.0.0.2 and the client's
own port, whether HAProxy sends ``send-proxy-v2`` or ``send-proxy`` (v1).  HAProxy's own
health checks (``check-send-proxy``: v2 LOCAL) must keep the server up, refused by no one.
"""

from __future__ import annotations

import socket
import time

import pytest
from conftest import connects, free_port, wait_for

from tests.haproxyharness import HAProxy, missing_reason

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")

CONFIG = """
global
    maxconn 64
defaults
    mode {mode}
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend v2
    bind 127.0.0.1:{v2}
    default_backend to_v2
frontend v1
    bind 127.0.0.1:{v1}
    default_backend to_v1
backend to_v2
    server s 127.0.0.1:{port} send-proxy-v2 source 127.0.0.3 check inter 200 check-send-proxy
backend to_v1
    server s 127.0.0.1:{port} send-proxy source 127.0.0.3
"""


@pytest.fixture
def haproxy(tmp_path):
    started: list[HAProxy] = []

    def start(port: int, mode: str) -> tuple[HAProxy, dict[str, int]]:
        """HAProxy in ``mode`` in front of sockserve's ``port``: it, and its frontends' ports."""
        ports = {"v2": free_port(), "v1": free_port()}
        started.append(HAProxy(tmp_path, [], cfg=CONFIG.format(mode=mode, port=port, **ports)))
        for front in ports.values():
            assert wait_for(lambda front=front: connects(front), 5), "haproxy does not listen"
        return started[-1], ports

    yield start
    for proxy in started:
        proxy.stop()


def from_client(port: int, data: bytes) -> tuple[str, bytes]:
    """Connect from 127.0.0.2 and send ``data``: (our 'host:port', all that came back)."""
    with socket.socket() as s:
        s.settimeout(10)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(data)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        host, port = s.getsockname()
        return f"{host}:{port}", got


@pytest.mark.parametrize("interface, policy", [("asgi", "rr"), ("stream", "shared")])
def test_the_app_sees_the_client_behind_haproxy(start_server, haproxy, interface, policy):
    server = start_server(f"tests.apps.proxy_probe:{interface}", "--workers", "1", "--policy", policy,
                          "--interface", interface, "--proxy-protocol", "all",
                          "--forwarded-allow-ips", "127.0.0.3")
    proxy, fronts = haproxy(server.port, "http" if interface == "asgi" else "tcp")
    request = b"hi\n" if interface == "stream" else b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for version in ("v2", "v1"):
        client, got = from_client(fronts[version], request)
        line = got.rpartition(b"\r\n\r\n")[2].decode().strip()
        assert line.startswith(f"{client} "), (version, line, server.stderr())
        if interface == "stream":
            assert line.endswith("via 127.0.0.3"), line  # the real peer is HAProxy's source
    time.sleep(1.0)  # five health checks (inter 200ms), each a v2 LOCAL header
    assert "PROXY: connection from" not in server.stderr()  # none refused
    assert "is DOWN" not in proxy.err_path.read_text() + proxy.log_path.read_text()


def test_haproxy_from_an_untrusted_source_is_refused(start_server, haproxy):
    server = start_server("tests.apps.proxy_probe:asgi", "--workers", "1", "--proxy-protocol", "all")
    _, fronts = haproxy(server.port, "tcp")  # HAProxy connects from 127.0.0.3; only 127.0.0.1 is trusted
    _, got = from_client(fronts["v2"], b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"127.0.0.2" not in got
    assert wait_for(lambda: "127.0.0.3" in server.stderr() and "forwarded-allow-ips" in server.stderr(), 5)
