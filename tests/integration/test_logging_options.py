"""Access log, terminal log lines, --log-config and debug tracebacks, with real processes."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys

from conftest import ROOT, free_port, http_get, wait_for

PROBE = "tests.apps.http_probe:app"
ACCESS = re.compile(r'<6>sockserve\[worker 1\]: 127\.0\.0\.1:\d+ - "GET /scope\?x=1 HTTP/1\.1" 200 (\d+) '
                    r'\d+\.\dms$')


def access_lines(server) -> list[str]:
    return [line for line in server.stderr().splitlines() if '"GET ' in line]


def test_access_log_is_off_by_default(start_server):
    server = start_server(PROBE, "--workers", "1")
    assert http_get(server.port, "/scope?x=1")[0] == 200
    server.stop()
    assert access_lines(server) == []


def test_access_log_line_has_client_request_status_bytes_duration(start_server):
    server = start_server(PROBE, "--workers", "1", "--access-log")
    status, body = http_get(server.port, "/scope?x=1")
    assert status == 200
    assert wait_for(lambda: access_lines(server), 5)
    [line] = access_lines(server)
    match = ACCESS.match(line)
    assert match, line
    assert int(match.group(1)) == len(body.encode())


def test_access_log_format_and_env_switch(start_server):
    server = start_server(PROBE, "--workers", "1", "--access-log-format",
                          "{method} {path} -> {status} by {worker_id} from {client}",
                          env={"SOCKSERVE_ACCESS_LOG": "true"})
    http_get(server.port, "/boom")
    http_get(server.port, "/scope")
    assert wait_for(lambda: len([ln for ln in server.stderr().splitlines() if " -> " in ln]) == 2, 5)
    lines = [ln.split(": ", 1)[1] for ln in server.stderr().splitlines() if " -> " in ln]
    assert lines[0].startswith("GET /boom -> 500 by 1 from 127.0.0.1:")  # the app raised: 500
    assert lines[1].startswith("GET /scope -> 200 by 1 from 127.0.0.1:")


def test_access_log_client_is_the_forwarded_one(start_server):
    server = start_server(PROBE, "--workers", "1", "--access-log", "--access-log-format", "{client}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n"
                  b"Connection: close\r\n\r\n")
        while s.recv(65536):
            pass
    assert wait_for(lambda: "]: 203.0.113.9:0" in server.stderr(), 5), server.stderr()


def test_log_config_routes_the_access_log_to_a_file(start_server, tmp_path):
    target = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "formatters": {"plain": {"format": "ACCESS %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(target), "formatter": "plain"}},
        "loggers": {"sockserve.access": {"handlers": ["file"], "propagate": False}}}))
    server = start_server(PROBE, "--workers", "1", "--access-log", "--log-config", str(config))
    http_get(server.port, "/scope?x=1")
    assert wait_for(lambda: target.exists() and "ACCESS 127.0.0.1:" in target.read_text(), 5)
    assert access_lines(server) == []  # not on stderr any more
    assert "ready:" in server.stderr()  # sockserve's own lines still are


def test_bad_log_config_is_exit_2(start_server, tmp_path):
    server = start_server("--log-config", str(tmp_path / "absent.ini"), ready=False)
    assert server.proc.wait(30) == 2
    assert server.stderr().strip() == f"sockserve: error: log_config {tmp_path / 'absent.ini'}: " \
        "No such file or directory"


def test_terminal_gets_time_and_level(tmp_path):
    """stderr on a pty: '2026-11-30 14:01:19 INFO sockserve: ready: ...', no <N> prefixes."""
    primary, secondary = pty.openpty()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sockserve", "-w", "1", "-b", f"127.0.0.1:{port}",
                             "--control-socket", str(tmp_path / "c.sock"), "--log-target", "stderr"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    out = b""
    try:
        while b"ready:" not in out:
            chunk = os.read(primary, 4096)  # the master writes within its boot; EOF raises OSError
            out += chunk
    finally:
        proc.terminate()
        proc.wait(30)
        os.close(primary)
    lines = out.decode().replace("\r", "").splitlines()
    ready = next(line for line in lines if "ready:" in line)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO sockserve: ready: ", ready), lines
    assert not any(line.startswith("<") for line in lines)


def test_debug_shows_the_import_traceback(start_server):
    quiet = start_server("tests.apps.broken:app", "--workers", "1", ready=False)
    assert quiet.proc.wait(30) == 6
    assert "Traceback" not in quiet.stderr()
    loud = start_server("tests.apps.broken:app", "--workers", "1", "--log-level", "debug", ready=False)
    assert loud.proc.wait(30) == 6
    text = loud.stderr()
    assert "settings other than the defaults: app='tests.apps.broken:app', bind=" in text
    assert "Traceback (most recent call last):" in text and 'tests/apps/broken.py", line' in text
    assert "RuntimeError: this app is broken on purpose" in text
