"""The harness itself: a trivial socket-activated Type=notify unit in a real systemd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SRC_IN_BOX
from harness import Box

pytestmark = pytest.mark.system
PORT = 18080
LOADGEN = Path(__file__).with_name("loadgen.py")

SOCKET_UNIT = f"""[Unit]
Description=harness probe socket
[Socket]
ListenStream=127.0.0.1:{PORT}
"""
# Answers one HTTP-ish line per connection from fd 3; READY=1 through python3-systemd.
SERVER = """
import os, socket
from systemd import daemon
srv = socket.socket(fileno=3)
daemon.notify("READY=1\\nSTATUS=probe serving")
print("probe: started pid", os.getpid(), flush=True)
while True:
    conn, _ = srv.accept()
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nConnection: close\\r\\n\\r\\nhello world pid %d" % os.getpid())
    conn.close()
"""
SERVICE_UNIT = """[Unit]
Description=harness probe service
Requires=probe.socket
[Service]
Type=notify
DynamicUser=yes
ExecStart=/usr/bin/python3 /usr/local/lib/probe/probe.py
"""


@pytest.fixture(scope="module")
def box(make_box) -> Box:
    box = make_box("--ro-bind", f"{REPO}:{SRC_IN_BOX}")
    box.watched = ["probe.socket", "probe.service"]
    box.write_file("/etc/systemd/system/probe.socket", SOCKET_UNIT)
    box.write_file("/etc/systemd/system/probe.service", SERVICE_UNIT)
    box.write_file("/usr/local/lib/probe/probe.py", SERVER)
    box.run("systemctl", "daemon-reload")
    return box


def ask(box: Box) -> str:
    with box.connect(("127.0.0.1", PORT)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        return sock.recv(4096).decode()


def test_connection_activates_notify_service(box):
    box.run("systemctl", "start", "probe.socket")
    assert box.show("probe.service", "ActiveState")["ActiveState"] == "inactive"
    answer = ask(box)
    props = box.show("probe.service", "MainPID", "Type", "SubState", "StatusText")
    assert answer.endswith(f"hello world pid {props['MainPID']}")
    assert (props["Type"], props["SubState"], props["StatusText"]) == ("notify", "running", "probe serving")
    assert f"probe: started pid {props['MainPID']}" in box.journal("-u", "probe.service", "-o", "cat")


def test_source_tree_is_bound_read_only(box):
    assert box.run("test", "-f", f"{SRC_IN_BOX}/pyproject.toml", check=False).returncode == 0
    touch = box.run("touch", f"{SRC_IN_BOX}/.sdbox-write-probe", check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr


def test_loadgen_runs_in_box_netns_and_counts(box):
    box.run("systemctl", "start", "probe.socket")
    out = subprocess.run(box.net_cmd(sys.executable, str(LOADGEN), "--port", str(PORT), "--count", "40",
                                     "--seconds", "10", "--concurrency", "2"),
                         capture_output=True, text=True, timeout=30, check=True).stdout
    pid = int(box.show("probe.service", "MainPID")["MainPID"])
    assert out.strip() == f'{{"ok": 40, "refused": 0, "bad_status": 0, "errors": {{}}, "pids": [{pid}]}}'


def test_stopped_socket_refuses_and_host_netns_is_separate(box):
    box.run("systemctl", "stop", "probe.socket", "probe.service")
    with pytest.raises(ConnectionRefusedError):
        ask(box)
    box.run("systemctl", "start", "probe.socket")
    assert ask(box).startswith("HTTP/1.1 200")
    host = subprocess.run(["curl", "-s", "-m", "2", f"http://127.0.0.1:{PORT}/"], capture_output=True)
    assert host.returncode == 7  # curl: couldn't connect (the box's port is not on the host)
