"""The master under systemd-socket-activate: inherited fds, names, Accept=yes."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess

import pytest
from conftest import (
    alive,
    answers,
    failed_activation,
    free_port,
    http_get,
    needs_activate,
    socket_activate,
    wait_for,
)

from sockserve.master.control import ControlError, request

pytestmark = [pytest.mark.timeout(60), needs_activate]


def status(path: str) -> dict | None:
    try:
        return request(path, {"cmd": "status"}, 2)
    except (ControlError, OSError):
        return None


def test_master_serves_every_named_inherited_socket(tmp_path):
    ports = free_port(), free_port()
    control = str(tmp_path / "control.sock")
    proc = socket_activate(("-l", f"127.0.0.1:{ports[0]}", "-l", f"127.0.0.1:{ports[1]}",
                            "--fdname=http:admin"), "--workers", "2", "--control-socket", control,
                           stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: answers(ports[0]), 15)  # the first connection starts the master
        assert wait_for(lambda: (s := status(control)) and s["state"] == "running", 15)
        assert status(control)["listeners"] == ["http", "admin"]
        for port in ports:
            code, body = http_get(port)
            assert code == 200 and body.startswith("hello world from worker")
        workers = [w["pid"] for w in status(control)["workers"]]
        listening = listening_socket_inodes()
        assert socket_inodes(proc.pid) & listening  # the master holds them...
        for pid in workers:  # ...rr workers inherit none, nor the variables
            assert not socket_inodes(pid) & listening
            assert b"LISTEN_FDS" not in pathlib.Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_bind_together_with_inherited_sockets_is_an_error():
    port = free_port()
    proc = socket_activate(("-l", f"127.0.0.1:{port}"), "--bind", "127.0.0.1:9", stderr=subprocess.PIPE,
                           text=True)
    code, ours = failed_activation(proc, port)
    assert code == 2
    assert len(ours) == 1 and "under systemd the socket unit sets the address" in ours[0], ours


def test_accept_yes_connection_is_served_in_process():
    port = free_port()
    proc = socket_activate(("-l", f"127.0.0.1:{port}", "--accept"), stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: answers(port), 60)  # each try starts a whole process: slow when loaded
        code, body = http_get(port)
        assert code == 200 and body.startswith("hello world from worker 0 (pid ")
        pid = int(body.split("pid ")[1].split(")")[0])
        assert wait_for(lambda: not alive(pid), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def socket_inodes(pid: int) -> set[str]:
    links = (os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
    return {link[8:-1] for link in links if link.startswith("socket:[")}


def listening_socket_inodes() -> set[str]:
    """Inodes of TCP sockets in LISTEN state (st 0A) in this network namespace."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                inodes.add(fields[9])
    return inodes
