"""Security: the control socket is private, fds do not leak into workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile

import pytest
from test_chaos import sockets_in

pytestmark = pytest.mark.timeout(60)
O_CLOEXEC = 0o2000000
NOBODY = 65534
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    sys.exit(print("EACCES"))
s.sendall(b'{"cmd": "status"}\\n')
print(s.makefile().readline())
"""


def fd_flags(pid: int, fd: int) -> int:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            return int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
    except FileNotFoundError:  # closed since listed (the status connection of wait_ready): leaks nothing
        return O_CLOEXEC


def as_nobody(path: str) -> str:
    done = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                           "/usr/bin/python3", "-c", CLIENT, path], cwd="/", capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_control_socket_is_0600_and_another_uid_is_refused(start_server):
    directory = tempfile.mkdtemp(prefix="sockserve-sec-")
    os.chmod(directory, 0o755)  # only the socket's own mode and SO_PEERCRED stand in the way
    path = os.path.join(directory, "control.sock")
    try:
        server = start_server("--workers", "1", "--control-socket", path, ready=False)
        server.control = path
        server.wait_ready()
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
        assert as_nobody(path) == "EACCES"  # the kernel refuses the connect
        os.chmod(path, 0o666)  # were the mode lost, SO_PEERCRED still refuses
        answer = json.loads(as_nobody(path))
        assert answer == {"ok": False, "error": f"permission denied for uid {NOBODY}"}
        assert server.status()["ok"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_master_fds_are_cloexec(start_server, policy):
    server = start_server("--workers", "2", "--policy", policy)
    sockets = sockets_in(server.pid)
    kinds = {(s.family, s.type) for s in sockets}
    assert (socket.AF_UNIX, socket.SOCK_SEQPACKET) in kinds and any(s.listening for s in sockets)
    not_cloexec = [fd for fd in map(int, os.listdir(f"/proc/{server.pid}/fd"))
                   if fd > 2 and not fd_flags(server.pid, fd) & O_CLOEXEC]
    assert not_cloexec == [], [(fd, os.readlink(f"/proc/{server.pid}/fd/{fd}")) for fd in not_cloexec]


def listeners_of(pid: int, port: int) -> list[str]:
    return [s.inode for s in sockets_in(pid) if s.listening and s.port == port]


@pytest.mark.parametrize("policy, shared", [("rr", 0), ("shared", 1)])
def test_workers_hold_only_their_channel_and_the_listener_they_need(start_server, policy, shared):
    server = start_server("--workers", "3", "--policy", policy)
    master_listener = listeners_of(server.pid, server.port)
    assert len(master_listener) == 1
    for pid in server.worker_pids().values():
        sockets = sockets_in(pid)
        channels = [s for s in sockets if s.type == socket.SOCK_SEQPACKET]
        listening = [s for s in sockets if s.listening]
        assert len(channels) == 1, sockets  # its own channel, not a sibling's
        assert [s.inode for s in listening] == (master_listener if shared else []), sockets
        assert not any(s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM and s.listening
                       for s in sockets)  # not the control socket
