"""TLS through uvicorn's ssl options (stdlib ssl): certificates made here with the openssl CLI."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, wait_for

PROBE = "tests.apps.http_probe:app"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(where: Path) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=sockserve test CA", cwd=where)


def make_cert(where: Path, name: str, cn: str, serial: int) -> None:
    """``name.pem``/``name.key`` signed by the CA in ``where``, valid for 127.0.0.1."""
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={cn}", cwd=where)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
            str(serial), "-days", "2", "-extfile", "ext.cnf", "-out", f"{name}.pem", cwd=where)


@pytest.fixture
def pki(tmp_path):
    where = tmp_path / "pki"
    where.mkdir()
    make_ca(where)
    make_cert(where, "server", "server one", 1)
    make_cert(where, "client", "a client", 2)
    return where


def tls_get(port: int, pki: Path, client_cert: bool = False) -> tuple[dict, str]:
    """GET /scope over TLS, checking the server against the CA: (scope, server cert serial)."""
    data, serial = tls_exchange(port, pki, client_cert)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body), serial


def tls_exchange(port: int, pki: Path, client_cert: bool) -> tuple[bytes, str]:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client_cert:
        context.load_cert_chain(pki / "client.pem", pki / "client.key")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        serial = s.getpeercert()["serialNumber"]
        s.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data, serial


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_tls_serves_https(start_server, pki, policy):
    server = start_server(PROBE, "--workers", "2", "--policy", policy,
                          "--ssl-certfile", str(pki / "server.pem"), "--ssl-keyfile", str(pki / "server.key"))
    seen, serial = tls_get(server.port, pki)
    assert seen["scheme"] == "https" and serial == "01"


def test_client_certificates_are_required_when_asked(start_server, pki):
    server = start_server(PROBE, "--workers", "1", "--ssl-certfile", str(pki / "server.pem"),
                          "--ssl-keyfile", str(pki / "server.key"), "--ssl-ca-certs", str(pki / "ca.pem"),
                          "--ssl-cert-reqs", "required")
    seen, _ = tls_get(server.port, pki, client_cert=True)
    assert seen["scheme"] == "https"
    try:  # TLS 1.3: the server's alert (or EOF) comes on the first read
        answer = tls_exchange(server.port, pki, client_cert=False)[0]
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""
    assert tls_get(server.port, pki, client_cert=True)[0]["scheme"] == "https"  # the worker lives on


def test_reload_picks_up_renewed_certificates(start_server, pki):
    server = start_server(PROBE, "--workers", "2", "--ssl-certfile", str(pki / "server.pem"),
                          "--ssl-keyfile", str(pki / "server.key"))
    assert tls_get(server.port, pki)[1] == "01"
    make_cert(pki, "server", "server renewed", 7)  # certbot-style renewal in place
    assert tls_get(server.port, pki)[1] == "01"  # old workers keep the certificate they loaded
    done = subprocess.run([sys.executable, "-m", "sockserve", "reload", "--control-socket", server.control],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: all(tls_get(server.port, pki)[1] == "07" for _ in range(4)), 10)


@pytest.mark.parametrize("text", ["not a certificate\n", None])
def test_bad_certificate_is_one_line_and_exit_2(start_server, tmp_path, text):
    bad = tmp_path / "bad.pem"
    if text is not None:
        bad.write_text(text)
    server = start_server(PROBE, "--workers", "1", "--ssl-certfile", str(bad), ready=False)
    assert server.proc.wait(30) == 2
    [line] = server.stderr().splitlines()
    assert line.startswith(f"sockserve: error: ssl_certfile {bad}: cannot load the certificate and key: ")


def test_encrypted_key_with_its_password(start_server, pki):
    openssl("rsa", "-in", "server.key", "-aes256", "-passout", "pass:s3cret", "-out", "locked.key", cwd=pki)
    args = (PROBE, "--workers", "1", "--ssl-certfile", str(pki / "server.pem"), "--ssl-keyfile",
            str(pki / "locked.key"))
    server = start_server(*args, "--ssl-keyfile-password", "s3cret")
    assert tls_get(server.port, pki)[0]["scheme"] == "https"
    wrong = start_server(*args, "--ssl-keyfile-password", "wrong", ready=False)
    assert wrong.proc.wait(30) == 2 and "cannot load the certificate and key" in wrong.stderr()


def test_unknown_ciphers_are_exit_2(start_server, pki):
    server = start_server(PROBE, "--ssl-certfile", str(pki / "server.pem"), "--ssl-keyfile",
                          str(pki / "server.key"), "--ssl-ciphers", "NO-SUCH-CIPHER", ready=False)
    assert server.proc.wait(30) == 2
    assert server.stderr().strip() == "sockserve: error: ssl_ciphers 'NO-SUCH-CIPHER': no cipher matches"


def test_stream_handler_over_tls(start_server, pki):
    server = start_server("tests.apps.sample:stream_handler", "--workers", "1", "--ssl-certfile",
                          str(pki / "server.pem"), "--ssl-keyfile", str(pki / "server.key"))
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"hello tls\n")
        assert s.recv(100) == b"HELLO TLS\n"
