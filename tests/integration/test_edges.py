"""Safe edges of a real master: a bad --control-socket path, malformed control requests, too few fds.

Each bad start must give one line ``sockserve: error: ...`` and exit 2 (the unit's
``RestartPreventExitStatus=2 6``), and must leave what is at the path untouched.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.timeout(60)


def run_master(*args: str, preexec=None, timeout: float = 20.0) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "sockserve", "--bind", f"127.0.0.1:{free_port()}", "--workers", "1",
            "--log-target", "stderr", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LISTEN_FDS", None)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec, stdin=subprocess.DEVNULL)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("sockserve: error: "), lines
    return lines[0]


def test_control_socket_at_a_regular_file_refuses_and_keeps_the_file(tmp_path):
    conf = tmp_path / "sockserve.toml"
    conf.write_text("workers = 1\n")  # the typo the issue describes: the config file itself
    line = one_error_line(run_master("--control-socket", str(conf)))
    assert "not a socket" in line and str(conf) in line
    assert conf.read_text() == "workers = 1\n"


def test_control_socket_at_a_directory_refuses_and_keeps_it(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "keep").write_text("x")
    line = one_error_line(run_master("--control-socket", str(directory)))
    assert "not a socket" in line
    assert (directory / "keep").read_text() == "x"


def test_control_socket_path_too_long(tmp_path):
    path = tmp_path / ("c" * 120)
    line = one_error_line(run_master("--control-socket", str(path)))
    assert "too long" in line
    assert not path.exists()


def test_control_socket_in_use_by_a_live_master(tmp_path):
    path = str(tmp_path / "control.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(path)
        live.listen(1)
        inode = os.stat(path).st_ino
        line = one_error_line(run_master("--control-socket", path))
        assert "in use" in line
        assert os.stat(path).st_ino == inode  # not replaced


def test_too_few_fds_is_one_line_naming_the_limit(tmp_path):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (12, 12))

    line = one_error_line(run_master("--control-socket", str(tmp_path / "c.sock"), preexec=low_limit))
    assert "RLIMIT_NOFILE" in line and "12" in line and "needs at least" in line


MALFORMED = [b"\n", b"not json\n", b"[1, 2]\n", b"\xff\xfe\n", b"[" * 5000 + b"\n",
             b'{"cmd": ["status"]}\n', b'{"cmd": 5}\n', b"9" * 5000 + b"\n",
             b'{"cmd": "status", "cmd": 1}\n', b"x" * 70000 + b"\n"]


def test_every_malformed_request_gets_one_json_error_line(start_server):
    import json

    server = start_server("--workers", "1")
    for raw in MALFORMED:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(server.control)
            client.sendall(raw)
            data = b""
            while chunk := client.recv(65536):
                data += chunk
        assert data.endswith(b"\n") and data.count(b"\n") == 1, (raw[:20], data)
        answer = json.loads(data)
        assert answer["ok"] is False and isinstance(answer["error"], str), (raw[:20], answer)
        assert "\n" not in answer["error"]
    assert server.status()["state"] == "running"
    stderr = server.stderr()
    assert "Traceback" not in stderr and "Task exception" not in stderr, stderr
    logged = [line for line in stderr.splitlines() if "control request" in line]
    assert len(logged) == len(MALFORMED), stderr
