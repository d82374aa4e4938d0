"""HTTP limits with hostile clients against a real master and workers (worker/limits.py).

Short timeouts keep the tests fast; every loop is bounded in count and time.
"""

from __future__ import annotations

import resource
import selectors
import socket
import sys
import threading
import time

import pytest
from workerharness import (
    DEBIAN_PYTHON,
    WorkerUnderTest,
    accepted_pair,
    debian_python_reason,
    listener,
    read_response,
)

from tests.loadclient import run_load

pytestmark = pytest.mark.timeout(120)
APP = "tests.apps.pressure:app"
HOSTILE = 2000
PARTIAL = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "  # a head that never ends


def raise_own_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} fds, hard limit {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def wait_closed(socks: list[socket.socket], deadline: float) -> dict[socket.socket, tuple[float, bytes]]:
    """Read every socket until EOF or reset (or the deadline): {sock: (when, bytes read)}."""
    selector = selectors.DefaultSelector()
    got: dict[socket.socket, bytes] = {}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        got[sock] = b""
    closed: dict[socket.socket, tuple[float, bytes]] = {}
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            got[sock] += chunk
            if not chunk:
                closed[sock] = (time.monotonic(), got[sock])
                selector.unregister(sock)
    selector.close()
    return closed


def test_two_thousand_idle_and_partial_head_connections_are_closed_while_others_are_served(start_server):
    raise_own_fd_limit(HOSTILE + 512)
    server = start_server(APP, "--workers", "2", "--idle-timeout", "1.5", "--headers-timeout", "1.5")
    opened: dict[socket.socket, float] = {}
    for i in range(HOSTILE):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if i % 2:
            sock.sendall(PARTIAL)
        opened[sock] = time.monotonic()
    served: list = []
    loader = threading.Thread(target=lambda: served.append(
        run_load(server.port, threads=2, max_requests=200, seconds=4)))
    loader.start()
    closed = wait_closed(list(opened), time.monotonic() + 20)
    loader.join(15)
    early = [s for s, (when, _) in closed.items() if when - opened[s] < 1.0]
    answered_408 = sum(1 for _, data in closed.values() if data.startswith(b"HTTP/1.1 408"))
    load = served[0]
    print(f"\n{HOSTILE} hostile connections: {len(closed)} closed ({answered_408} with 408), "
          f"{len(early)} before 1.0s; meanwhile {load.summary()}")
    assert len(closed) == HOSTILE
    assert not early
    assert answered_408 == HOSTILE // 2  # every partial head got its 408; idle ones just close
    assert load.ok == len(load.outcomes) > 0, load.summary()
    for sock in opened:
        sock.close()


def test_a_slowloris_head_times_out_even_while_bytes_trickle_in(start_server):
    server = start_server(APP, "--workers", "1", "--headers-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        answer = b""
        for i in range(40):  # one byte per 0.1 s: 4 s at most
            try:
                sock.sendall(PARTIAL[i:i + 1] if i < len(PARTIAL) else b"x")
            except OSError:
                break
            sock.settimeout(0.1)
            try:
                answer += sock.recv(1024)
            except TimeoutError:
                continue
            if answer:
                break
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 0.9 < elapsed < 2.5, elapsed


def test_the_next_request_on_a_keep_alive_connection_gets_the_head_timeout_too(start_server):
    server = start_server(APP, "--workers", "1", "--headers-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(PARTIAL)
        head, _ = read_response(sock, timeout=5)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert sock.recv(10) == b""


def test_a_head_timeout_longer_than_the_idle_timeout_runs_its_full_length(start_server):
    """The idle deadline passes while a head is being read: the sweep (worker/sweep.py) leaves
    the connection to the head deadline, whose 408 still comes in time."""
    server = start_server(APP, "--workers", "1", "--idle-timeout", "0.5", "--headers-timeout", "2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(PARTIAL)
        sock.settimeout(1.2)  # past the idle timeout: the connection must still be open, silent
        with pytest.raises(TimeoutError):
            sock.recv(1024)
        head, _ = read_response(sock, timeout=5)
        elapsed = time.monotonic() - started
    assert head.startswith(b"HTTP/1.1 408"), head
    assert 1.9 < elapsed < 3.5, elapsed


def test_a_head_over_max_header_size_is_refused(start_server):
    server = start_server(APP, "--workers", "1", "--max-header-size", "4096")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 8192 + b"\r\n")
        head, _ = read_response(sock)
    assert head.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), head  # 400: h11's own limit
    status, body = server.get("/")
    assert status == 200  # a head under the limit is served


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_a_tls_handshake_that_never_comes_is_bounded_by_idle_timeout(start_server, tmp_path, policy):
    from test_tls import make_ca, make_cert

    make_ca(tmp_path)
    make_cert(tmp_path, "server", "server", 1)
    server = start_server(APP, "--workers", "1", "--policy", policy, "--idle-timeout", "1",
                          "--ssl-certfile", str(tmp_path / "server.pem"),
                          "--ssl-keyfile", str(tmp_path / "server.key"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        try:
            closed = sock.recv(10) == b""
        except ConnectionResetError:
            closed = True
        elapsed = time.monotonic() - started
    assert closed and 0.8 < elapsed < 5, elapsed


@pytest.mark.parametrize("python", ["venv", "debian"])
def test_limits_hold_with_each_uvicorn_we_ship_on(python):
    """The limits wrap uvicorn's protocol classes: also Debian 12's uvicorn 0.17.6 (the .deb's)."""
    if python == "debian" and (reason := debian_python_reason()):
        pytest.skip(reason)
    lsock = listener()
    worker = WorkerUnderTest(python=sys.executable if python == "venv" else DEBIAN_PYTHON,
                             headers_timeout=1.0, idle_timeout=1.0, max_header_size=2048)
    try:
        slow = worker.handed_client(lsock)
        slow.sendall(PARTIAL)
        head, _ = read_response(slow, timeout=5)
        assert head.startswith(b"HTTP/1.1 408"), head
        big, conn = accepted_pair(lsock)
        worker.hand_off(conn, seq=2)
        big.sendall(PARTIAL + b"a" * 4096)
        head, _ = read_response(big, timeout=5)
        assert head.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), head
        whole, conn = accepted_pair(lsock)  # a head over the limit in one read (test_hostile_http.py)
        worker.hand_off(conn, seq=3)
        whole.sendall(PARTIAL + b"a" * 4096 + b"\r\n\r\n")
        head, _ = read_response(whole, timeout=5)
        assert head.startswith(b"HTTP/1.1 431"), head
        later, conn = accepted_pair(lsock)  # a keep-alive connection's second head never ends
        worker.hand_off(conn, seq=4)
        later.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_response(later, timeout=5)
        assert head.startswith(b"HTTP/1.1 200"), head
        later.sendall(PARTIAL)
        head, _ = read_response(later, timeout=5)
        assert head.startswith(b"HTTP/1.1 408"), head
        piped, conn = accepted_pair(lsock)  # pipelined past MAX_PIPELINED: all answered
        worker.hand_off(conn, seq=5)
        piped.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100
                      + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        piped.settimeout(10)
        data = b""
        while chunk := piped.recv(65536):
            data += chunk
        assert data.count(b"HTTP/1.1 200") == 101, data[-200:]
    finally:
        worker.close()
        lsock.close()
