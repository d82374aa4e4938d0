"""PROXY protocol v1/v2 on listeners (--proxy-protocol), real masters and workers on loopback.

The client's address from the header reaches ASGI ``scope["client"]``, WSGI ``REMOTE_ADDR``,
a stream handler's ``peername`` and the access log, in rr (handed fds) and shared (the
worker accepts); connections without a valid header, slow ones, oversized ones and headers
from untrusted peers are closed with a (rate-limited) log line, and the worker serves on.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
import time

import pytest
from conftest import (
    connects,
    free_port,
    needs_activate,
    read_until_closed,
    socket_activate,
    terminate,
    wait_for,
)

from sockserve.worker.proxyproto import SIGNATURE_V2
from sockserve.worker.proxyread import LOG_BURST

APP = {"asgi": "tests.apps.proxy_probe:asgi", "wsgi": "tests.apps.proxy_probe:wsgi",
       "stream": "tests.apps.proxy_probe:stream"}
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 8443\r\n"
V2 = SIGNATURE_V2 + b"\x21\x11\x00\x0c" + socket.inet_aton("203.0.113.9") + socket.inet_aton("198.51.100.2") \
    + struct.pack("!HH", 40000, 443)
V2_INET6 = SIGNATURE_V2 + b"\x21\x21\x00\x24" + socket.inet_pton(socket.AF_INET6, "2001:db8::7") \
    + socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 61000, 443)
V2_LOCAL = SIGNATURE_V2 + b"\x20\x00\x00\x00"
HTTP = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def ask(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection; what came back until close ("" when closed or reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s)


def answer(port: int, header: bytes, interface: str) -> str:
    """The probe app's line for a connection starting with ``header``."""
    got = ask(port, header + (b"hi\n" if interface == "stream" else HTTP))
    return got.rpartition(b"\r\n\r\n")[2].decode().strip()


def refusals(server) -> list[str]:
    return [line for line in server.stderr().splitlines() if "PROXY: connection from" in line]


@pytest.mark.parametrize("policy, interface", [
    (policy, interface) for policy in ("rr", "shared") for interface in ("asgi", "wsgi", "stream")
] + [("reuseport", "asgi")])
def test_the_header_names_the_client_the_app_sees(start_server, policy, interface):
    server = start_server(APP[interface], "--workers", "1", "--policy", policy, "--interface", interface,
                          "--proxy-protocol", "all", "--access-log", "--access-log-format", "from {client}")
    seen = "via 127.0.0.1" if interface == "stream" else ""
    assert answer(server.port, V1, interface) == f"192.0.2.7:51234 198.51.100.1:8443 {seen}".strip()
    assert answer(server.port, V2, interface) == f"203.0.113.9:40000 198.51.100.2:443 {seen}".strip()
    assert answer(server.port, V2_INET6, interface) == f"2001:db8::7:61000 2001:db8::1:443 {seen}".strip()
    local = answer(server.port, V2_LOCAL, interface)  # HAProxy's health check: the real endpoints
    assert local.startswith("127.0.0.1:") and f"127.0.0.1:{server.port}" in local, local
    if interface != "stream":
        spoof = HTTP.replace(b"Host: x\r\n", b"Host: x\r\nX-Forwarded-For: 6.6.6.6\r\n")
        got = ask(server.port, V2 + spoof)  # the client (203.0.113.9) is no trusted proxy: ignored
        assert got.rpartition(b"\r\n\r\n")[2].startswith(b"203.0.113.9:40000 "), got
        assert wait_for(lambda: "from 203.0.113.9:40000" in server.stderr(), 5), server.stderr()
        assert "from 192.0.2.7:51234" in server.stderr()
    assert refusals(server) == []


def test_a_listener_named_by_address_takes_headers_and_the_other_stays_plain(start_server):
    proxied = free_port()
    server = start_server(APP["asgi"], "--workers", "1", "--bind", f"127.0.0.1:{proxied}",
                          "--proxy-protocol", f"127.0.0.1:{proxied}")
    assert answer(proxied, V2, "asgi").startswith("203.0.113.9:40000")
    assert answer(server.port, b"", "asgi").startswith("127.0.0.1:")  # the fixture's --bind: plain HTTP
    assert b" 400 " in ask(server.port, V2 + HTTP)  # where no header is expected, it is HTTP garbage


def test_a_named_bind_is_named_by_its_name(start_server):
    edge = free_port()
    server = start_server(APP["asgi"], "--workers", "1", "--bind", f"edge=127.0.0.1:{edge}",
                          "--proxy-protocol", "edge")
    assert answer(edge, V1, "asgi").startswith("192.0.2.7:51234 ")
    assert answer(server.port, b"", "asgi").startswith("127.0.0.1:")


def test_bad_headers_are_closed_with_a_log_line_and_the_worker_serves_on(start_server):
    server = start_server(APP["asgi"], "--workers", "1", "--proxy-protocol", "all", "--idle-timeout", "1")
    assert ask(server.port, HTTP) == b""  # no header: closed, no answer
    assert ask(server.port, SIGNATURE_V2 + b"\x21\x11\xff\xff" + b"x" * 100) == b""  # claims 65535 bytes
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:  # slowloris
        closed = False
        for byte in V1[:-2]:
            try:
                slow.sendall(bytes([byte]))
                time.sleep(0.1)
            except OSError:
                closed = True
                break
        closed = closed or wait_for(lambda: slow.recv(1) == b"", 5)
    assert closed and time.monotonic() - began < 5
    assert answer(server.port, V1, "asgi").startswith("192.0.2.7:51234")  # still serving
    assert wait_for(lambda: len(refusals(server)) == 3, 5), server.stderr()
    lines = refusals(server)
    assert "no PROXY header" in lines[0] and "65535" in lines[1] and "within 1s" in lines[2], lines


def test_a_flood_of_bad_connections_logs_a_few_lines(start_server):
    server = start_server(APP["asgi"], "--workers", "1", "--proxy-protocol", "all")
    for _ in range(LOG_BURST * 4):
        assert ask(server.port, b"garbage\r\n") == b""
    assert answer(server.port, V2, "asgi").startswith("203.0.113.9:40000")
    assert len(refusals(server)) == LOG_BURST, server.stderr()


def test_a_header_from_an_untrusted_peer_is_refused(start_server):
    server = start_server(APP["asgi"], "--workers", "1", "--proxy-protocol", "all",
                          "--forwarded-allow-ips", "192.0.2.1, 10.0.0.0/8")
    assert ask(server.port, V2 + HTTP) == b""
    assert wait_for(lambda: refusals(server), 5)
    assert "127.0.0.1" in refusals(server)[0] and "forwarded-allow-ips" in refusals(server)[0]


def test_tls_after_the_header_is_the_protocols(start_server, tmp_path):
    """The header is read to its last byte and not one more: the TLS handshake after it works."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=x"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=60)
    server = start_server(APP["asgi"], "--workers", "1", "--proxy-protocol", "all",
                          "--ssl-certfile", str(tmp_path / "cert.pem"),
                          "--ssl-keyfile", str(tmp_path / "key.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(V2)
        with context.wrap_socket(raw) as tls:
            tls.sendall(HTTP)
            got = b""
            while chunk := tls.recv(65536):
                got += chunk
    assert got.rpartition(b"\r\n\r\n")[2].startswith(b"203.0.113.9:40000 "), got


@needs_activate
def test_a_systemd_socket_is_named_by_its_fdname(tmp_path):
    edge, admin = free_port(), free_port()
    proc = socket_activate(("-l", f"127.0.0.1:{edge}", "-l", f"127.0.0.1:{admin}", "--fdname=edge:admin"),
                           APP["asgi"], "--workers", "1", "--control-socket", str(tmp_path / "control.sock"),
                           "--proxy-protocol", "edge", stderr=subprocess.DEVNULL)
    try:  # the first connection (plain, to admin) starts the master
        assert wait_for(lambda: _plain_answers(admin), 15)
        assert answer(edge, V2, "asgi").startswith("203.0.113.9:40000 ")
    finally:
        terminate(proc, 20)


def _plain_answers(port: int) -> bool:
    try:
        return answer(port, b"", "asgi").startswith("127.0.0.1:")
    except OSError:  # the activator does not listen yet
        return False


@needs_activate
def test_accept_yes_connections_take_the_header_too(tmp_path):
    port = free_port()
    proc = socket_activate(("-l", f"127.0.0.1:{port}", "--accept"), APP["asgi"], "--proxy-protocol", "all",
                           stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: connects(port), 10)
        assert answer(port, V1, "asgi").startswith("192.0.2.7:51234 198.51.100.1:8443")
    finally:
        terminate(proc, 10)


def test_an_entry_naming_no_listener_is_a_bad_setting(start_server):
    server = start_server(APP["asgi"], "--workers", "1", "--proxy-protocol", "all, 127.0.0.1:1, edge",
                          ready=False)
    assert server.proc.wait(15) == 2
    errors = [line for line in server.stderr().splitlines() if "error" in line]
    assert len(errors) == 1 and "'127.0.0.1:1', 'edge' names no listener" in errors[0], server.stderr()
    assert f"listeners: 127.0.0.1:{server.port}" in errors[0]


def test_a_half_sent_header_holds_a_stop_at_most_idle_timeout(start_server):
    server = start_server(APP["asgi"], "--workers", "1", "--proxy-protocol", "all", "--idle-timeout", "2",
                          "--graceful-timeout", "20")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(V1[:20])
        assert wait_for(lambda: server.status()["workers"][0].get("state") == "listening", 5)
        time.sleep(0.3)  # handed over and being read
        began = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - began < 6, "the stop waited past idle_timeout for a header"


@pytest.mark.parametrize("allow, trusted", [("*", True), ("127.0.0.1", False)])
def test_a_unix_socket_peer_is_trusted_only_with_star(start_server, tmp_path, allow, trusted):
    path = str(tmp_path / "web.sock")
    server = start_server(APP["asgi"], "--workers", "1", "--bind", f"unix:{path}",
                          "--proxy-protocol", f"unix:{path}", "--forwarded-allow-ips", allow)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        got = b""
        # refused: the worker closes an untrusted unix peer without reading, so the send may
        # already meet the closed end (EPIPE on a unix socket; TCP would reset it later)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(V2 + HTTP)
            while chunk := s.recv(65536):
                got += chunk
    if trusted:
        assert got.rpartition(b"\r\n\r\n")[2].startswith(b"203.0.113.9:40000 "), got
    else:
        assert got == b"" and wait_for(lambda: refusals(server), 5)
        assert "unix" in refusals(server)[0] and "forwarded-allow-ips" in refusals(server)[0]
