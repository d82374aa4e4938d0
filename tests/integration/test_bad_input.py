"""Bad input from every side: workers breaking the protocol, systemd's variables, config files, slow clients.

test_channel_faults.py covers one bad record each (garbage, unknown ack, online
twice, wrong fd count, oversized); these extend it.
"""

from __future__ import annotations

import array
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, wait_for
from test_channel_faults import steal_channel

from sockserve.cluster import protocol
from tests.loadclient import Load, one_request

pytestmark = pytest.mark.timeout(60)
NOBODY = 65534


def send_raw(channel: socket.socket, record: bytes, nfds: int = 0) -> None:
    fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(nfds)]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    try:
        channel.sendmsg([record], ancillary)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("record, nfds", [
    (protocol.encode(protocol.NewConn("x", (1,))), 1),  # a master-only message
    (protocol.encode(protocol.QueryServer("no-such-key")), 0),
    (protocol.encode(protocol.Listening("no-such-key")), 0),
    (protocol.encode(protocol.Heartbeat(0, 0)), protocol.MAX_FDS + 1),  # MSG_CTRUNC
    (b"\x09[1,2", 0),  # truncated JSON
    (b"\x09" + b"[" * 5000 + b"]" * 5000, 0),  # nested deep enough to recurse
    (b"\x06[1, true, 3]", 0),  # an ack with a field too many
])
def test_more_malformed_records_replace_the_worker_and_the_master_serves_on(start_server, record, nfds):
    server = start_server("--workers", "2")
    victim = min(server.worker_pids().values())
    with steal_channel(victim) as channel:
        send_raw(channel, record, nfds)
    assert wait_for(lambda: victim not in server.worker_pids().values()
                    and len(server.worker_pids()) == 2, 5), server.status()
    assert "protocol error" in server.stderr()
    assert all(server.get()[0] == 200 for _ in range(10))


def test_garbage_from_a_worker_under_load_loses_no_queued_connection(start_server):
    server = start_server("--workers", "2", "--rr-window", "4")
    victim_id = min(server.worker_pids())
    with Load(server.port, threads=4, seconds=15, timeout=8) as load:
        time.sleep(0.5)
        with steal_channel(server.worker_pids()[victim_id]) as channel:
            send_raw(channel, b"\xffgarbage")
        assert wait_for(lambda: victim_id not in server.worker_pids()
                        and len(server.worker_pids()) == 2, 5), server.status()
        time.sleep(0.5)
    result = load.result
    print(f"\ngarbage under load: {result.summary()}")
    assert len(result.failed) <= 4 and set(result.errors()) <= {"ConnectionResetError", "EOF"}
    assert result.ok > 100


def test_a_flood_of_heartbeats_does_not_starve_the_master(start_server):
    server = start_server("--workers", "2")
    victim = min(server.worker_pids().values())
    record = protocol.encode(protocol.Heartbeat(1, 1))
    with steal_channel(victim) as channel:
        channel.settimeout(2)
        sent, deadline = 0, time.monotonic() + 2
        while time.monotonic() < deadline and sent < 200_000:
            send_raw(channel, record)
            sent += 1
            if sent % 2000 == 0:
                outcome = one_request(server.port, timeout=2)
                assert outcome.ok and outcome.elapsed < 1.0, (sent, outcome)
    print(f"\n{sent} heartbeats flooded in")
    assert server.proc.poll() is None and victim in server.worker_pids().values()


def activated(env: dict[str, str], fd3: str | None) -> subprocess.CompletedProcess:
    """``python -m sockserve`` with LISTEN_PID set to its own pid and fd 3 from ``fd3``."""
    redirect = f"3<{fd3}" if fd3 else "3<&-"
    script = f"LISTEN_PID=$$ exec {sys.executable} -m sockserve --control-socket /nonexistent/c {redirect}"
    full = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    return subprocess.run(["sh", "-c", script], cwd=ROOT, env={**full, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("env, fd3, words", [
    ({"LISTEN_FDS": "abc"}, "/dev/null", "LISTEN_FDS='abc' is not a non-negative number"),
    ({"LISTEN_FDS": "-1"}, "/dev/null", "LISTEN_FDS='-1' is not a non-negative number"),
    ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"}, "/dev/null", "has 2 names for LISTEN_FDS=1"),
    ({"LISTEN_FDS": "1"}, "/etc/hostname", "fd 3 (unknown) is not a socket"),
    ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"}, "/dev/null", "fd 3 (http) is not a socket"),
    ({"LISTEN_FDS": "1"}, None, "fd 3 (unknown) is not open"),
])
def test_malformed_socket_activation_is_one_line_and_exit_2(env, fd3, words):
    done = activated(env, fd3)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("sockserve: error: ") and words in lines[0], lines


def run_with_config(path: str, user: int | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "sockserve", "-c", path, "--control-socket", "/nonexistent/c"]
    if user is not None:  # the venv's interpreter may not be readable by nobody
        argv = ["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups",
                "/usr/bin/python3", *argv[1:]]
    return subprocess.run(argv, cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("content, words", [
    (b"workers = [\n", "invalid TOML"),
    (b"sockserve = 5\n", "[sockserve] must be a table"),
    (b"workers = 'many'\n", "workers: 'many' is not a valid int"),
    (b"[sockserve]\nno_such_setting = 1\n", "unknown setting 'no_such_setting'"),
    (b"policy = 'fastest'\n", "policy: 'fastest' is not one of"),
    (b"workers = 2\n\xff\xfe\n", "invalid TOML"),
])
def test_invalid_config_file_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    done = run_with_config(str(path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert words in done.stderr, done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_or_missing_config_file_is_one_line_and_exit_2(tmp_path):
    secret = tmp_path / "secret.toml"
    secret.write_text("workers = 2\n")
    secret.chmod(0)
    tmp_path.chmod(0o755)
    for done, words in ((run_with_config(str(secret), NOBODY), "Permission denied"),
                        (run_with_config(str(tmp_path / "missing.toml")), "No such file or directory"),
                        (run_with_config(str(tmp_path)), "Is a directory")):
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert words in done.stderr, done.stderr


SLOW_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40 + b"\r\n"  # never the blank line
SLOW_CLIENTS = 150


def pending(sock: socket.socket) -> bool:
    """Open and unanswered: nothing to read yet, neither bytes nor EOF."""
    sock.setblocking(False)  # with a timeout, recv would first wait for bytes
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_slowloris_clients_do_not_starve_other_connections(start_server, policy):
    """150 heads that never end, a byte at a time, all sitting in the one worker: every request
    beside them is answered while they are all still open and unanswered.  Starved, a request would
    get no answer at all; its 30 s timeout is a hang guard, not a speed bar (latency is printed)."""
    server = start_server("--workers", "1", "--policy", policy, "--headers-timeout", "600")
    slow = []
    try:
        for _ in range(SLOW_CLIENTS):  # a first byte at once: the idle timeout is not what is tested
            slow.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            slow[-1].sendall(SLOW_HEAD[:1])
        assert wait_for(lambda: server.status()["workers"][0]["open"] >= SLOW_CLIENTS, 30), server.status()
        outcomes = []
        for sent in range(1, 21):
            for sock in slow:  # one more byte of the head on each slow connection
                sock.sendall(SLOW_HEAD[sent:sent + 1])
            outcomes.append(one_request(server.port, timeout=30))
        still_pending = sum(map(pending, slow))
    finally:
        for sock in slow:
            sock.close()
    print(f"\nslowloris {policy}: {len(outcomes)} requests beside {SLOW_CLIENTS} slow ones, "
          f"max {max(o.elapsed for o in outcomes) * 1000:.0f} ms")
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
    assert still_pending == SLOW_CLIENTS  # they were there, unanswered, the whole time
