"""Real inherited fds: systemd-socket-activate execs a Python snippet calling listen_fds().

Also sd_notify datagrams to a real AF_UNIX socket.
"""

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest
from conftest import read_until_closed

from sockserve.systemd.notify import Notifier
from tests.ports import free_port

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")

SNIPPET = r"""
import json, os, sys
from sockserve.systemd.listenfds import ListenFdsError, listen_fds
environ = dict(os.environ) if sys.argv[1] == "pure" else os.environ
try:
    found = listen_fds(environ)
except ListenFdsError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
for s in found:
    if not s.listening:
        s.sock.sendall(b"served by " + s.key.encode())
print(json.dumps({
    "sockets": [{"fd": s.fd, "name": s.name, "key": s.key, "listening": s.listening,
                 "address": s.address, "inheritable": os.get_inheritable(s.fd)} for s in found],
    "listen_env": sorted(k for k in environ if k.startswith("LISTEN_")),
}))
"""


def run_activated(args, trigger, mode="library"):
    """Run SNIPPET under systemd-socket-activate ``args``; ``trigger()`` makes it exec."""
    cmd = [ACTIVATE, *args, sys.executable, "-c", SNIPPET, mode]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(proc.stderr, lambda text: text.count("Listening on") == args.count("-l"))
        reply = trigger()
        line = read_until(proc.stdout, lambda text: text.endswith("\n"))
    finally:
        if proc.poll() is None:  # --accept: the activator keeps listening
            proc.kill()
        proc.communicate(timeout=10)
    return json.loads(line), reply


def read_until(pipe, done, timeout=10):
    """Read ``pipe`` unbuffered until ``done(text)``; fail after ``timeout`` seconds."""
    text, deadline = "", time.monotonic() + timeout
    while not done(text):
        ready, _, _ = select.select([pipe], [], [], max(0, deadline - time.monotonic()))
        chunk = os.read(pipe.fileno(), 4096) if ready else b""
        assert chunk, f"gave up waiting; read so far: {text!r}"
        text += chunk.decode()
    return text


def connect(port):
    def trigger():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            return read_until_closed(sock)  # a reset: the snippet exits without accepting
    return trigger


@needs_activate
@pytest.mark.parametrize("mode", ["library", "pure"])
def test_named_listening_sockets_are_found(mode):
    p1, p2 = free_port(), free_port()
    args = ["-l", f"127.0.0.1:{p1}", "-l", f"127.0.0.1:{p2}", "--fdname=http:admin"]
    found, _ = run_activated(args, connect(p1), mode)
    assert found["sockets"] == [
        {"fd": 3, "name": "http", "key": "http", "listening": True, "address": f"127.0.0.1:{p1}",
         "inheritable": False},
        {"fd": 4, "name": "admin", "key": "admin", "listening": True, "address": f"127.0.0.1:{p2}",
         "inheritable": False},
    ]
    assert found["listen_env"] == []


@needs_activate
def test_unnamed_sockets_are_keyed_by_address(tmp_path):
    port = free_port()
    path = tmp_path / "s.sock"
    found, _ = run_activated(["-l", f"127.0.0.1:{port}", "-l", str(path)], connect(port))
    keys = [(s["name"], s["key"]) for s in found["sockets"]]
    assert keys == [("unknown", f"127.0.0.1:{port}"), ("unknown", f"unix:{path}")]


@needs_activate
def test_datagram_socket_is_an_error():
    port = free_port()

    def trigger():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"x", ("127.0.0.1", port))

    found, _ = run_activated(["--datagram", "-l", f"127.0.0.1:{port}"], trigger)
    assert found == {"error": "LISTEN_FDS: fd 3 (unknown) is a datagram socket; "
                              "sockserve serves stream sockets"}


@needs_activate
def test_accept_yes_connection_is_reported_as_not_listening():
    port = free_port()
    found, reply = run_activated(["--accept", "-l", f"127.0.0.1:{port}", "--fdname=http"], connect(port))
    [sock] = found["sockets"]
    assert sock["listening"] is False and sock["name"] == "http"
    assert sock["address"] == f"127.0.0.1:{port}"
    assert reply == b"served by http"


def run_with_fd3(fd3_redirect, listen_fds="1"):
    """LISTEN_PID=$$ then exec: the snippet keeps the shell's pid and its fd 3."""
    script = f'export LISTEN_PID=$$ LISTEN_FDS={listen_fds}; exec "$@" {fd3_redirect} 4<&-'
    cmd = ["sh", "-c", script, "sh", sys.executable, "-c", SNIPPET, "library"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
    return json.loads(done.stdout)


def test_non_socket_fd_is_an_error():
    assert run_with_fd3("3</dev/null") == {"error": "LISTEN_FDS: fd 3 (unknown) is not a socket"}


def test_closed_fd_is_an_error():
    assert run_with_fd3("3<&-") == {"error": "LISTEN_FDS: fd 3 (unknown) is not open"}


@pytest.fixture
def notify_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        yield sock


def test_notify_sends_lines_as_one_datagram(notify_socket):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.getsockname()})
    assert notifier.enabled
    assert notifier.notify("READY=1", "STATUS=2/2 workers, rr, 0 served, generation 1") is True
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=2/2 workers, rr, 0 served, generation 1"


def test_notify_reaches_abstract_socket():
    name = f"sockserve-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_through_python_systemd_in_process_environment(notify_socket):
    code = ("from sockserve.systemd.notify import Notifier; import sys; "
            "sys.exit(0 if Notifier.from_env().notify('WATCHDOG=1') else 1)")
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.getsockname()}
    subprocess.run([sys.executable, "-c", code], env=env, timeout=10, check=True)
    assert notify_socket.recv(4096) == b"WATCHDOG=1"


def test_notify_to_missing_socket_reports_failure(tmp_path):
    assert Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "absent")}).notify("READY=1") is False
