"""uvicorn's HTTP options through sockserve, with real processes on loopback.

Proxy headers on/off and trusted addresses, root path, limit-concurrency 503,
server/date headers, keep-alive timeout, --http selection.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from conftest import wait_for

PROBE = "tests.apps.http_probe:app"


def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` on a new connection; (status, lower-case headers, body) read until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(port: int, path: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    head = "".join(f"{h}\r\n" for h in extra)
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode())


def scope(port: int, *extra: str, path: str = "/scope") -> dict:
    status, _, body = get(port, path, *extra)
    assert status == 200, body
    return json.loads(body)


FORWARDED = ("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")


def test_proxy_headers_are_trusted_from_loopback_by_default(start_server):
    server = start_server(PROBE, "--workers", "1")
    seen = scope(server.port, *FORWARDED)
    assert seen["client"][0] == "203.0.113.7" and seen["scheme"] == "https"


@pytest.mark.parametrize("args", [("--no-proxy-headers",), ("--forwarded-allow-ips", "192.0.2.1")])
def test_proxy_headers_off_or_untrusted_peer_are_ignored(start_server, args):
    server = start_server(PROBE, "--workers", "1", *args)
    seen = scope(server.port, *FORWARDED)
    assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http"


def test_forwarded_allow_ips_star_trusts_every_peer(start_server):
    server = start_server(PROBE, "--workers", "1", "--forwarded-allow-ips", "*")
    assert scope(server.port, *FORWARDED)["client"][0] == "203.0.113.7"


def test_root_path_reaches_the_app(start_server):
    server = start_server(PROBE, "--workers", "1", "--root-path", "/api")
    assert scope(server.port)["root_path"] == "/api"


def test_limit_concurrency_answers_503_past_the_limit(start_server):
    server = start_server(PROBE, "--workers", "1", "--limit-concurrency", "2")
    slow: list[int] = []
    first = threading.Thread(target=lambda: slow.append(get(server.port, "/slow?s=3")[0]))
    first.start()
    try:  # the slow request holds its connection (the worker's 'open'), then more are refused
        assert wait_for(lambda: server.status()["workers"][0].get("open") == 1, 5.0)
        status_line = wait_for(lambda: get(server.port, "/scope")[0] == 503, 5.0)
        assert status_line, "no 503 while one slow request held a connection (limit 2 counts this one)"
    finally:
        first.join(10)
    assert slow == [200]
    assert get(server.port, "/scope")[0] == 200  # below the limit again


def test_no_limit_by_default(start_server):
    server = start_server(PROBE, "--workers", "1")
    slow: list[int] = []
    first = threading.Thread(target=lambda: slow.append(get(server.port, "/slow?s=1")[0]))
    first.start()
    codes = [get(server.port, "/scope")[0] for _ in range(3)]
    first.join(10)
    assert codes == [200] * 3 and slow == [200]


def test_server_and_date_headers_can_be_turned_off(start_server):
    on = start_server(PROBE, "--workers", "1")
    _, headers, _ = get(on.port, "/scope")
    assert headers.get("server") == "uvicorn" and "date" in headers
    off = start_server(PROBE, "--workers", "1", "--no-server-header", "--no-date-header")
    _, headers, _ = get(off.port, "/scope")
    assert "server" not in headers and "date" not in headers


def test_timeout_keep_alive_closes_an_idle_connection(start_server):
    server = start_server(PROBE, "--workers", "1", "--timeout-keep-alive", "0.5")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"}" not in data:
            data += s.recv(65536)
        s.settimeout(4)  # hang guard: the default (5 s) would not close within it
        assert s.recv(65536) == b""


@pytest.mark.parametrize("choice, cls", [("h11", "H11Protocol"), ("httptools", "HttpToolsProtocol")])
def test_http_implementation_is_chosen(start_server, choice, cls):
    server = start_server(PROBE, "--workers", "1", "--http", choice, "--log-level", "debug")
    assert scope(server.port)["path"] == "/scope"
    assert f"http: {cls}" in server.stderr()


def test_app_error_is_500_and_logged(start_server):
    server = start_server(PROBE, "--workers", "1")
    assert get(server.port, "/boom")[0] == 500
    assert wait_for(lambda: "RuntimeError: boom on purpose" in server.stderr(), 5)
