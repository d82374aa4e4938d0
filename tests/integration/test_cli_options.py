"""Server options a gunicorn user looks for first that had no end-to-end test yet."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

from conftest import http_get, wait_for


def test_backlog_reaches_listen(start_server):
    server = start_server("--workers", "1", "--backlog", "7")
    out = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert out[0] == "LISTEN" and out[2] == "7", out  # Send-Q of a listener is its backlog


def test_graceful_timeout_cuts_a_long_request(start_server):
    server = start_server("tests.apps.sample:slow_app", "--workers", "1", "--graceful-timeout", "0.5")
    answers: list[bytes] = []

    def slow() -> None:
        answers.append(http_get(server.port, "/?s=20", timeout=30))

    client = threading.Thread(target=slow)
    client.start()
    assert wait_for(lambda: server.status()["workers"][0].get("open") == 1, 5)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    client.join(15)
    assert answers == [(0, "")]  # the 20 s request was cut, not answered: not a byte came
    assert time.monotonic() - started < 10  # hang guard: 0.5 s of grace, not the 20 s request
