"""HTTP limits on a keep-alive connection's later requests, against a real master and worker.

worker/limited.py reads a keep-alive request on a fast path (no per-request timer, no
byte count) and its deadlines are checked by one sweep per worker (worker/sweep.py):
these pin what that must not lose. A later request's head trickled in (slowloris), bytes
that begin no head (CRLFs), a head over the limit split over reads, a head under it that
starts behind a body in the same read, and the same over TLS. Bounded in bytes and time.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

import pytest
from test_http_limits import PARTIAL
from test_tls import make_ca, make_cert
from workerharness import read_response

pytestmark = pytest.mark.timeout(120)
APP = "tests.apps.pressure:app"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def served_once(sock: socket.socket) -> None:
    sock.sendall(GET)
    head, _ = read_response(sock)
    assert head.startswith(b"HTTP/1.1 200"), head


def trickle(sock: socket.socket, pieces: list[bytes], every: float, limit: float) -> tuple[bytes, float]:
    """Send ``pieces`` one per ``every`` s until an answer or EOF: (what was read, seconds taken)."""
    started, answer = time.monotonic(), b""
    sock.settimeout(every)
    for piece in pieces:
        if time.monotonic() - started > limit:
            break
        with contextlib.suppress(OSError):  # closed by the server: what it answered is what counts
            sock.sendall(piece)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            chunk = b""
        answer += chunk
        if not chunk or answer:
            break
    return answer, time.monotonic() - started


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_slowloris_on_a_later_keep_alive_request_times_out(start_server, http):
    """The first byte of the second head arrives in a read of the fast path."""
    server = start_server(APP, "--workers", "1", "--http", http, "--headers-timeout", "1",
                          "--timeout-keep-alive", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        served_once(sock)
        answer, elapsed = trickle(sock, [PARTIAL[i:i + 1] for i in range(len(PARTIAL))] + [b"x"] * 40,
                                  every=0.1, limit=6)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < elapsed < 2.5, elapsed


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("first", [True, False], ids=["before-first-request", "between-requests"])
def test_blank_lines_that_begin_no_head_do_not_hold_a_connection(start_server, http, first):
    """CRLFs before a request line are skipped by httptools (no head begins) but are bytes:
    headers_timeout bounds them, before the first request and between keep-alive requests
    (they cancel uvicorn's keep-alive timer)."""
    server = start_server(APP, "--workers", "1", "--http", http, "--headers-timeout", "1",
                          "--idle-timeout", "30", "--timeout-keep-alive", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if not first:
            served_once(sock)
        answer, elapsed = trickle(sock, [b"\r\n"] * 40, every=0.1, limit=6)
    if http == "h11" and answer.startswith(b"HTTP/1.1 400"):
        return  # h11 refuses the blank lines itself, at once
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < elapsed < 2.5, elapsed


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_later_head_over_the_limit_trickled_in_is_refused(start_server, http):
    """20 KB of one header in 1 KB reads on the second request: refused, not buffered on."""
    server = start_server(APP, "--workers", "1", "--http", http, "--timeout-keep-alive", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        served_once(sock)
        answer, elapsed = trickle(sock, [PARTIAL] + [b"a" * 1000] * 40, every=0.05, limit=10)
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer  # 400: h11's own limit
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_head_that_starts_behind_a_request_and_ends_over_the_limit_is_refused_in_turn(start_server, http):
    """One read ends with the first 3 KB of a second head (after a whole request), the next
    reads bring it past 16 KiB: the first is answered, the second refused."""
    server = start_server(APP, "--workers", "1", "--http", http, "--timeout-keep-alive", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(GET + PARTIAL + b"a" * 3000)
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        answer, _ = trickle(sock, [b"a" * 2000] * 20, every=0.05, limit=10)
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_head_under_the_limit_behind_a_body_in_the_same_read_is_served(start_server, http):
    """A POST's 10 KB body and the first 3 KB of a 15 KB head in one read, the rest later:
    the bytes before the head are not counted as the head's (no 431 under the limit)."""
    server = start_server(APP, "--workers", "1", "--http", http, "--timeout-keep-alive", "30")
    body = b"b" * 10_000
    second = b"GET /2 HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 15_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                     + second[:3000])
        time.sleep(0.3)  # separate reads
        sock.sendall(second[3000:9000])
        time.sleep(0.3)
        sock.sendall(second[9000:])
        heads = [read_response(sock)[0] for _ in range(2)]
    assert all(head.startswith(b"HTTP/1.1 200") for head in heads), heads


def test_a_slowloris_on_a_later_keep_alive_request_times_out_over_tls(start_server, tmp_path):
    make_ca(tmp_path)
    make_cert(tmp_path, "server", "server", 1)
    server = start_server(APP, "--workers", "1", "--headers-timeout", "1", "--timeout-keep-alive", "30",
                          "--ssl-certfile", str(tmp_path / "server.pem"),
                          "--ssl-keyfile", str(tmp_path / "server.key"))
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        served_once(sock)
        answer, elapsed = trickle(sock, [PARTIAL[i:i + 4] for i in range(0, len(PARTIAL), 4)] + [b"x"] * 40,
                                  every=0.1, limit=6)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < elapsed < 2.5, elapsed


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_head_pipelined_behind_a_slow_request_times_out_after_its_answer(start_server, http):
    """A partial head sent behind a request the app takes 1.5 s to answer: the answer comes
    first, then the 408 (the head timed meanwhile), in order. Before the sweep it was not timed
    at all: the connection stayed open until timeout_keep_alive after the answer (30 s here)."""
    server = start_server(APP, "--workers", "1", "--http", http, "--headers-timeout", "0.5",
                          "--timeout-keep-alive", "30")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /slow?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n" + PARTIAL)
        head, body = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200") and body == b"slow done\n", (head, body)
        sock.settimeout(5)
        rest = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                rest += chunk
        elapsed = time.monotonic() - started
    assert rest.startswith(b"HTTP/1.1 408") or (http == "h11" and rest == b""), rest
    assert elapsed < 4, elapsed
