"""Settings a start refuses because of the sockets systemd passes (issue 16): ``agent`` beside
the agent's socket unit, ``proxy_protocol`` naming no listener, ``bind``, ``reuseport``.  The
start, ``sockserve check --socket-activated`` and a reload refuse each with the same one line
(``sockets.check_sockets``), never "needs a restart" advice that a restart would refuse."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from conftest import ROOT, free_port, wait_for
from test_agent import LAUNCH

from sockserve.master.control import ControlError, request

pytestmark = pytest.mark.timeout(120)
BASE = '[sockserve]\nworkers = 1\napp = "tests.apps.sample:asgi_app"\n'


def refusals(agent_port: int, other: int) -> dict[str, str]:
    """TOML line -> the start's message for it (under systemd: sockets http and agent)."""
    return {
        f'agent = "127.0.0.1:{other}"\n': f"agent: '127.0.0.1:{other}', but the socket unit passes "
                                          f"the agent's socket (FileDescriptorName=agent) on 127.0.0.1:"
                                          f"{agent_port}",
        'proxy_protocol = ["htpp"]\n': "proxy_protocol: 'htpp' names no listener (listeners: http; or 'all')",
        f'proxy_protocol = ["127.0.0.1:{other}"]\n': f"proxy_protocol: '127.0.0.1:{other}' names no listener",
        f'bind = ["127.0.0.1:{other}"]\n': "bind: under systemd the socket unit sets the address",
        'policy = "reuseport"\n': "policy: reuseport needs sockserve to bind the address itself",
    }


def test_start_check_and_reload_refuse_the_same_socket_clashes(tmp_path):
    http, agent_port, other = free_port(), free_port(), free_port()
    control, conf = str(tmp_path / "control.sock"), tmp_path / "sockserve.toml"
    argv = [sys.executable, "-c", LAUNCH, str(http), str(agent_port), "--config", str(conf),
            "--log-target", "stderr", "--control-socket", control]
    check = [sys.executable, "-m", "sockserve", "check", "--config", str(conf), "--socket-activated",
             "--control-socket", control]
    cases = refusals(agent_port, other)
    for line, message in cases.items():  # the start: one line, exit 2
        conf.write_text(BASE + line)
        start = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=30)
        assert start.returncode == 2 and f"sockserve: error: {message}" in start.stderr, (line, start.stderr)
    conf.write_text(BASE + f'proxy_protocol = ["http", "127.0.0.1:{http}"]\n'
                    f'agent = "127.0.0.1:{agent_port}"\n')  # what the sockets are: accepted
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _status(control) and _status(control)["state"] == "running", 20)
        ok = subprocess.run(check, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert ok.returncode == 0 and "configuration ok" in ok.stdout, ok.stderr
        for line, message in cases.items():
            conf.write_text(BASE + line)
            checked = subprocess.run(check, capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert checked.returncode == 2, (line, checked.stdout, checked.stderr)
            assert f"sockserve: error: {message}" in checked.stderr, (line, checked.stderr)
            answer = request(control, {"cmd": "reload", "wait": True}, 30)
            assert answer["ok"] is False and message in answer["message"], (line, answer)
            assert "needs a restart" not in answer["message"], answer
        assert _get_through_proxy(http).startswith(b"HTTP/1.1 200")  # the old workers serve on
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def _get_through_proxy(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 80\r\nGET / HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        return s.recv(65536)


def _status(control: str) -> dict | None:
    try:
        return request(control, {"cmd": "status"}, 2)
    except (ControlError, OSError):
        return None


def test_check_with_fdnames_refuses_agent_beside_the_agent_socket_and_unknown_names(tmp_path):
    """No master running: ``--fdnames http,agent`` (the socket units' names; their addresses are
    not known here, so any ``agent`` beside the agent's socket is refused, and an address in
    ``proxy_protocol`` is not judged)."""
    conf = tmp_path / "sockserve.toml"
    check = [sys.executable, "-m", "sockserve", "check", "--config", str(conf), "--fdnames", "http,agent"]
    for line, code, said in (
            ('agent = "127.0.0.1:9002"\n', 2, "sockserve: error: agent: '127.0.0.1:9002', but the socket "
                                              "unit passes the agent's socket (FileDescriptorName=agent): "),
            ('proxy_protocol = ["htpp"]\n', 2, "sockserve: error: proxy_protocol: 'htpp' names no listener"),
            ('proxy_protocol = ["http", "127.0.0.1:9000"]\n', 0, "sockserve: configuration ok")):
        conf.write_text(BASE + line)
        done = subprocess.run(check, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == code and said in done.stdout + done.stderr, (line, done.stdout, done.stderr)
