"""A stop that reaches graceful_timeout (or a fast stop) with requests still running.

The worker cancels what is left itself (the app sees ``http.disconnect``, streams see their
connection closed, tasks that ignore both are cancelled), runs the lifespan shutdown within its
budget and exits 0; the master's SIGKILL comes only when that overruns too.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest
from conftest import read_until_closed, wait_for

pytestmark = pytest.mark.timeout(60)


def events(tmp_path) -> list[str]:
    path = tmp_path / "events"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def open_request(port: int, path: str) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=15)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return client


def stop_with_running_request(start_server, tmp_path, path: str, *args: str,
                              app: str = "tests.apps.stopping:app", sig=signal.SIGTERM):
    server = start_server(app, "--workers", "1", *args, env={"MARKER_DIR": str(tmp_path)})
    client = open_request(server.port, path)
    assert wait_for(lambda: events(tmp_path), 10)  # the app has the request
    stopped = time.monotonic()
    server.signal(sig)
    read_until_closed(client)
    closed = time.monotonic() - stopped
    code = server.proc.wait(30)
    return server, code, closed, time.monotonic() - stopped


def assert_exited_by_itself(server) -> None:
    err = server.stderr()
    assert "exited after disconnect" in err, err
    assert "SIGKILL" not in err and "still draining" not in err, err


def test_request_running_past_graceful_timeout_sees_disconnect_and_lifespan_shutdown(start_server, tmp_path):
    server, code, closed, total = stop_with_running_request(
        start_server, tmp_path, "/slow?s=10", "--graceful-timeout", "3")
    assert code == 0
    assert 2.5 < closed < 6, closed  # cut at the graceful deadline, not at the end of the 10 s
    assert events(tmp_path) == ["request", "http.disconnect", "lifespan.shutdown"]
    assert_exited_by_itself(server)


def test_endless_sse_stream_is_cancelled_and_lifespan_shutdown_runs(start_server, tmp_path):
    server, code, closed, _ = stop_with_running_request(
        start_server, tmp_path, "/sse", "--graceful-timeout", "2")
    assert code == 0
    assert 1.5 < closed < 5, closed
    assert events(tmp_path) == ["sse", "sse.cancelled", "lifespan.shutdown"]
    assert_exited_by_itself(server)


def test_sse_stream_that_reads_receive_sees_disconnect(start_server, tmp_path):
    server, code, _, _ = stop_with_running_request(
        start_server, tmp_path, "/sse-listening", "--graceful-timeout", "1")
    assert code == 0
    assert events(tmp_path) == ["sse", "sse.disconnect", "lifespan.shutdown"]
    assert_exited_by_itself(server)


def test_stream_handler_sees_its_connection_closed(start_server, tmp_path):
    server, code, _, _ = stop_with_running_request(
        start_server, tmp_path, "/", "--graceful-timeout", "1", app="tests.apps.stopping:stream")
    assert code == 0
    seen = events(tmp_path)
    assert seen[0] == "stream" and seen[1] in ("stream.closed", "stream.cancelled"), seen
    assert_exited_by_itself(server)


def test_stream_handler_that_ignores_the_close_is_cancelled_without_a_traceback(start_server, tmp_path):
    """Python 3.11's streams logged "Exception in callback" and a CancelledError traceback
    for each stream handler cancelled at the stop."""
    server, code, _, _ = stop_with_running_request(
        start_server, tmp_path, "/", "--graceful-timeout", "1", app="tests.apps.stopping:stream_asleep")
    assert code == 0
    assert events(tmp_path) == ["stream", "stream.cancelled"]
    assert "Traceback" not in server.stderr() and "CancelledError" not in server.stderr(), server.stderr()
    assert_exited_by_itself(server)


def test_wsgi_request_in_its_thread_does_not_hold_the_worker(start_server, tmp_path):
    server, code, closed, _ = stop_with_running_request(
        start_server, tmp_path, "/", "--graceful-timeout", "1", app="tests.apps.stopping:slow_wsgi")
    assert code == 0 and closed < 4, closed
    assert_exited_by_itself(server)


def test_reload_cancels_the_old_generations_stream_at_graceful_timeout(start_server, tmp_path):
    server = start_server("tests.apps.stopping:app", "--workers", "1", "--graceful-timeout", "1",
                          env={"MARKER_DIR": str(tmp_path)})
    (old,) = server.worker_pids().values()
    client = open_request(server.port, "/sse")
    assert wait_for(lambda: events(tmp_path), 10)
    from sockserve.master.control import request
    assert request(server.control, {"cmd": "reload", "wait": True}, 30)["ok"]
    read_until_closed(client)
    assert wait_for(lambda: len(events(tmp_path)) >= 3, 10)
    lines = (tmp_path / "events").read_text().split()
    assert lines == ["sse", str(old), "sse.cancelled", str(old), "lifespan.shutdown", str(old)]
    assert wait_for(lambda: "exited after disconnect" in server.stderr(), 10)
    assert "SIGKILL" not in server.stderr(), server.stderr()


def test_sigint_cancels_at_once_and_runs_lifespan_shutdown(start_server, tmp_path):
    server, code, closed, total = stop_with_running_request(
        start_server, tmp_path, "/slow?s=10", sig=signal.SIGINT)
    assert code == 0
    assert closed < 3 and total < 8, (closed, total)  # not the 10 s, nor graceful_timeout (30 s)
    assert events(tmp_path) == ["request", "http.disconnect", "lifespan.shutdown"]
    assert "SIGKILL" not in server.stderr(), server.stderr()


def test_lifespan_shutdown_that_awaits_too_long_is_cut_by_the_workers_own_budget(start_server, tmp_path):
    server, code, _, total = stop_with_running_request(
        start_server, tmp_path, "/slow?s=10", "--graceful-timeout", "1",
        app="tests.apps.stopping:slow_shutdown")
    assert code == 0
    assert events(tmp_path) == ["request", "http.disconnect", "lifespan.shutdown"]
    assert_exited_by_itself(server)  # at graceful_timeout + budget, before the master's SIGKILL
    assert total < 10, total


def test_lifespan_shutdown_that_blocks_is_killed_after_the_budget(start_server, tmp_path):
    """The one case left to SIGKILL: the worker's loop is blocked, so it cannot keep its own deadline."""
    server, code, _, total = stop_with_running_request(
        start_server, tmp_path, "/slow?s=10", "--graceful-timeout", "1",
        app="tests.apps.stopping:stuck_shutdown")
    assert code == 0
    assert events(tmp_path) == ["request", "http.disconnect", "lifespan.shutdown"]
    assert "SIGKILL" in server.stderr()
    assert total < 10, total  # graceful_timeout + the shutdown budget + slack, not the 60 s sleep
