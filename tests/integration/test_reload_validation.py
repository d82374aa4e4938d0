"""A reload re-reads the configuration through the start's validation: what the next start
would refuse (``bind`` or ``reuseport`` under socket activation, ...) is refused now, with the
start's one-line message, and the old workers keep serving; what only a restart can change
(the listening addresses, reuseport or not) is refused as such."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, answers, free_port, http_get, needs_activate, wait_for

from sockserve.master.control import ControlError, request

pytestmark = pytest.mark.timeout(90)
BIND_UNDER_SYSTEMD = "bind: under systemd the socket unit sets the address: remove bind from "  # the start's


def reload(control: str) -> dict:
    return request(control, {"cmd": "reload", "wait": True}, 30)


def status(control: str) -> dict | None:
    try:
        return request(control, {"cmd": "status"}, 2)
    except (ControlError, OSError):
        return None


def listening_pids(control: str) -> set[int]:
    return {w["pid"] for w in status(control)["workers"] if w["state"] == "listening"}


@needs_activate
def test_reload_under_socket_activation_refuses_what_a_start_would(tmp_path):
    port, control = free_port(), str(tmp_path / "control.sock")
    conf = tmp_path / "sockserve.toml"
    conf.write_text("[sockserve]\nworkers = 2\n")
    proc = subprocess.Popen(["systemd-socket-activate", "-E", "PYTHONPATH", "-l", f"127.0.0.1:{port}",
                             sys.executable, "-m", "sockserve", "--config", str(conf),
                             "--control-socket", control],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: answers(port), 15)
        assert wait_for(lambda: (s := status(control)) and s["state"] == "running", 15)
        before = listening_pids(control)
        refusals = {
            'bind = "127.0.0.1:9000"\n': BIND_UNDER_SYSTEMD,
            'policy = "reuseport"\n': "policy: reuseport needs sockserve to bind the address itself",
            "workers = 0\n": "workers: must be at least 1, got 0",
        }
        for line, message in refusals.items():
            conf.write_text("[sockserve]\nworkers = 2\n" + line if "workers" not in line
                            else "[sockserve]\n" + line)
            answer = reload(control)
            assert answer["ok"] is False and message in answer["message"], (line, answer)
            assert listening_pids(control) == before  # the old workers keep serving
            assert http_get(port)[0] == 200
        conf.write_text("[sockserve]\nworkers = 2\n")  # and the next reload works
        answer = reload(control)
        assert answer["ok"] is True, answer
        assert wait_for(lambda: len(listening_pids(control)) == 2, 10)
        assert not listening_pids(control) & before
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_embedded_reload_refuses_what_only_a_restart_can_change(start_server, tmp_path):
    conf = tmp_path / "sockserve.toml"
    conf.write_text("[sockserve]\nworkers = 1\n")
    server = start_server("--config", str(conf))  # binds 127.0.0.1:<port> from the command line
    before = server.worker_pids()
    for line, why in (('policy = "reuseport"\n', "policy: rr -> reuseport needs a restart"),
                      ('hooks = "tests.apps.sample:asgi_app"\n', "hooks: None -> "),
                      ('ssl_certfile = "/nonexistent/cert.pem"\n',  # the start's line, as at start
                       "ssl_certfile /nonexistent/cert.pem: cannot load the certificate and key")):
        conf.write_text("[sockserve]\nworkers = 1\n" + line)
        answer = reload(server.control)
        assert answer["ok"] is False and answer["message"].startswith(f"configuration: {why}"), answer
        assert server.worker_pids() == before and server.get()[0] == 200
