"""Hostile HTTP clients that cost memory or parse work, against a real master and worker.

Pipelined requests sent without reading the answers (worker/limits.py pauses reading
while requests are queued), and request heads over ``max_header_size`` that arrive in
one read. Every flood is bounded in bytes and time.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import http_get, read_until_closed

pytestmark = pytest.mark.timeout(120)
APP = "tests.apps.pressure:app"
PIPELINED = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10_000  # 270 KB of valid requests
RSS_BOUND_MB = 150  # the worker starts near 30 MB; unbounded it passed 800 MB in 30 s
FLOOD_SECONDS = 8.0
FLOOD_BYTES = 200_000_000  # per connection, a cap on top of the time


def rss_mb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024


def flood(port: int, sent: list[int], index: int) -> None:
    """Send pipelined GETs for FLOOD_SECONDS, never reading an answer (a small receive buffer)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        started, offset = time.monotonic(), 0
        while time.monotonic() - started < FLOOD_SECONDS and sent[index] < FLOOD_BYTES:
            try:
                n = sock.send(PIPELINED[offset:])
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                return
            sent[index] += n
            offset = (offset + n) % len(PIPELINED)


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_pipelined_requests_never_read_do_not_grow_the_worker_without_bound(start_server, http):
    server = start_server(APP, "--workers", "1", "--http", http)
    (pid,) = server.worker_pids().values()
    sent = [0, 0]
    floods = [threading.Thread(target=flood, args=(server.port, sent, i)) for i in range(2)]
    for thread in floods:
        thread.start()
    peak, served = rss_mb(pid), []
    while any(thread.is_alive() for thread in floods):
        time.sleep(0.5)
        peak = max(peak, rss_mb(pid))
        served.append(http_get(server.port, timeout=5)[0])
    for thread in floods:
        thread.join()
    assert peak < RSS_BOUND_MB, f"worker RSS reached {peak} MB ({sum(sent) // 1_000_000} MB sent)"
    assert served and all(status == 200 for status in served), served
    assert pid in server.worker_pids().values()  # the same worker, not a replacement


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_pipelined_requests_are_all_answered_past_the_queue_bound(start_server, http):
    """500 pipelined GETs in one write (far past MAX_PIPELINED): each answered."""
    server = start_server(APP, "--workers", "1", "--http", http)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(b"GET /n%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(500))
                     + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200") == 501, data[-200:]


def read_status(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("size", [17_000, 100_000, 260_000])
def test_a_head_over_max_header_size_in_one_read_is_refused(start_server, http, size):
    server = start_server(APP, "--workers", "1", "--http", http)  # default max_header_size: 16 KiB
    head = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    assert read_status(server.port, head).startswith(b"HTTP/1.1 431"), size
    assert read_status(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") \
        .startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_the_size_limit_bounds_the_header_count(start_server, http):
    """12,000 tiny headers (60 KB) in one read: refused by the size, so the count is bounded too."""
    server = start_server(APP, "--workers", "1", "--http", http)
    many = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"a:b\r\n" * 12_000 + b"\r\n"
    assert read_status(server.port, many).startswith(b"HTTP/1.1 431")
    fits = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + b"a:b\r\n" * 3_000 + b"\r\n"
    assert read_status(server.port, fits).startswith(b"HTTP/1.1 200")  # 15 KB, under 16 KiB: served


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_blank_line_split_over_two_reads_ends_the_head_before_a_big_body(start_server, http):
    """The head's last CRLF in one read, its blank line and a 100 KB body in the next: served."""
    server = start_server(APP, "--workers", "1", "--http", http)
    body = b"b" * 100_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n" % len(body))
        time.sleep(0.3)  # a separate read
        sock.sendall(b"\r\n" + body)
        data = read_until_closed(sock)  # the app answers without reading the body: then a reset
    assert data.startswith(b"HTTP/1.1 200"), data[:100]


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_later_pipelined_head_over_the_limit_is_not_served(start_server, http):
    """A second head of 100 KB behind a small one in the same read (httptools: counted slice
    by slice; h11: its Request event): the first is answered, then the second is refused,
    in order (h11: its own 400)."""
    server = start_server(APP, "--workers", "1", "--http", http)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1 200") == 1, data[:300]
    assert data.count(b"HTTP/1.1 431" if http == "httptools" else b"HTTP/1.1 400") == 1, data[:300]
