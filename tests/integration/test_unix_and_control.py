"""Unix socket mode/owner and removal on stop; `sockserve status|reload` without flags."""

from __future__ import annotations

import grp
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, free_port, http_get, wait_for

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
for name in ("RUNTIME_DIRECTORY", "LISTEN_FDS", "NOTIFY_SOCKET"):
    ENV.pop(name, None)


class Master:
    """``python -m sockserve ARGS`` with ``env`` (no --control-socket added); stopped by PID."""

    def __init__(self, tmp_path: Path, *args: str, env: dict | None = None) -> None:
        self.log = tmp_path / f"master-{len(list(tmp_path.glob('master-*')))}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "sockserve", "--log-target", "stderr", *args],
                                         cwd=ROOT, env={**ENV, **(env or {})}, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def text(self) -> str:
        return self.log.read_text()

    def wait_ready(self) -> None:
        assert wait_for(lambda: "ready:" in self.text() or self.proc.poll() is not None, 20), self.text()
        assert self.proc.poll() is None, self.text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(40)


@pytest.fixture
def masters(tmp_path):
    started: list[Master] = []

    def start(*args: str, env: dict | None = None) -> Master:
        master = Master(tmp_path, *args, env=env)
        started.append(master)
        return master

    yield start
    for master in started:
        if master.proc.poll() is None:
            master.proc.kill()
            master.proc.wait()


def unix_get(path: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_unix_socket_mode_owner_and_removal_on_stop(masters, tmp_path):
    path = str(tmp_path / "app.sock")
    master = masters("-w", "1", "-b", f"unix:{path}", "--unix-socket-mode", "0660",
                     "--unix-socket-owner", ":daemon", "--control-socket", str(tmp_path / "c.sock"))
    master.wait_ready()
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam("daemon").gr_gid
    assert unix_get(path).startswith(b"HTTP/1.1 200 OK")
    assert master.stop() == 0
    assert not os.path.exists(path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_unix_socket_file_is_removed_on_every_stop(masters, tmp_path, sig):
    path = str(tmp_path / "app.sock")
    master = masters("-w", "1", "-b", f"unix:{path}", "--control-socket", str(tmp_path / "c.sock"))
    master.wait_ready()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    master.stop(sig)
    assert not os.path.exists(path)


def test_unknown_unix_socket_owner_is_exit_2(masters, tmp_path):
    path = tmp_path / "app.sock"
    master = masters("-b", f"unix:{path}", "--unix-socket-owner", "no-such-user-here")
    assert master.proc.wait(30) == 2
    assert master.text().strip() == (f"sockserve: error: bind unix:{path}: unix_socket_owner: "
                                     "no such user 'no-such-user-here'")
    assert not path.exists()


def ctl(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sockserve", *args], cwd=ROOT, env={**ENV, **(env or {})},
                          capture_output=True, text=True, timeout=90)


def test_status_and_reload_without_flags_under_a_runtime_directory(masters, tmp_path):
    """As systemd runs them: RUNTIME_DIRECTORY set for the master and for ExecReload."""
    runtime = {"RUNTIME_DIRECTORY": str(tmp_path / "run")}
    port = free_port()
    master = masters("-w", "2", "-b", f"127.0.0.1:{port}", env=runtime)
    master.wait_ready()
    status = ctl("status", env=runtime)
    assert status.returncode == 0 and "policy rr, generation 1" in status.stdout, status.stderr
    reload = ctl("reload", env=runtime)
    assert reload.returncode == 0, reload.stderr
    assert "generation 2" in ctl("status", env=runtime).stdout
    assert http_get(port)[0] == 200
    master.stop()
    assert not (tmp_path / "run" / "control.sock").exists()


def test_status_of_a_template_instance(masters):
    name = f"sstest-{os.getpid()}"
    where = Path(f"/run/sockserve-{name}")
    if os.getuid() != 0:
        pytest.skip("the packaged instances' /run/sockserve-NAME needs root")
    where.mkdir(mode=0o700)
    try:
        master = masters("-w", "1", "-b", f"127.0.0.1:{free_port()}", env={"RUNTIME_DIRECTORY": str(where)})
        master.wait_ready()
        status = ctl("status", "--instance", name)  # no RUNTIME_DIRECTORY: as an admin runs it
        assert status.returncode == 0 and "policy rr" in status.stdout, status.stderr
        absent = ctl("status", "--instance", name + "-absent")
        assert absent.returncode == 1
        assert f"/run/sockserve-{name}-absent/control.sock does not exist" in absent.stderr
    finally:
        master.stop()
        shutil.rmtree(where, ignore_errors=True)


def test_second_master_on_the_default_path_runs_without_control_socket(masters, tmp_path):
    runtime = {"RUNTIME_DIRECTORY": str(tmp_path / "run")}
    first = masters("-w", "1", "-b", f"127.0.0.1:{free_port()}", env=runtime)
    first.wait_ready()
    port = free_port()
    second = masters("-w", "1", "-b", f"127.0.0.1:{port}", env=runtime)
    second.wait_ready()
    assert "in use by another running sockserve; running without a control socket" in second.text()
    assert http_get(port)[0] == 200
    assert f"master pid {first.proc.pid}" in ctl("status", env=runtime).stdout


def test_explicit_control_socket_in_use_is_exit_2(masters, tmp_path):
    control = str(tmp_path / "c.sock")
    first = masters("-w", "1", "-b", f"127.0.0.1:{free_port()}", "--control-socket", control)
    first.wait_ready()
    second = masters("-w", "1", "-b", f"127.0.0.1:{free_port()}", "--control-socket", control)
    assert second.proc.wait(30) == 2
    assert second.text().strip() == f"sockserve: error: control socket {control} is in use by another " \
        "running sockserve"
