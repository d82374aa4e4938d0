"""``sockserve check``: the start's validation alone (like ``nginx -t``), in a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, failed_activation, free_port, needs_activate, socket_activate

pytestmark = pytest.mark.timeout(60)
OK = "sockserve: configuration ok"
BIND_UNDER_SYSTEMD = ("sockserve: error: bind: under systemd the socket unit sets the address: remove "
                      "bind (--bind/SOCKSERVE_BIND) and set ListenStream= in sockserve.socket (systemctl "
                      "edit sockserve.socket: [Socket] ListenStream= then ListenStream=HOST:PORT); see "
                      "sockserve(8)")


def check(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SOCKSERVE_", "LISTEN_"))}
    full.update(PYTHONPATH=str(ROOT), **(env or {}))
    done = subprocess.run([sys.executable, "-m", "sockserve", "check", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout, done.stderr


def one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sockserve: error: "), err
    return lines[0]


def test_good_configuration_is_ok(tmp_path):
    conf = tmp_path / "sockserve.toml"
    conf.write_text('[sockserve]\napp = "tests.apps.sample:asgi_app"\nworkers = 2\npolicy = "shared"\n')
    assert check("--config", str(conf)) == (0, OK + "\n", "")
    assert check("tests.apps.sample:wsgi_app", "-w", "3") == (0, OK + "\n", "")
    assert check() == (0, OK + "\n", "")  # the built-in app


@pytest.mark.parametrize(("args", "toml", "env", "message"), [
    (["-w", "0"], "", {}, "workers: must be at least 1, got 0"),
    ([], "workers = 0\n", {}, "workers: must be at least 1, got 0"),
    (["--policy", "fastest"], "", {}, "policy: 'fastest' is not one of rr, shared, reuseport"),
    ([], 'bind = "nowhere"\n', {}, "bind 'nowhere': expected HOST:PORT"),
    ([], "graceful_timeout = -1\n", {}, "graceful_timeout: must be a positive"),
    ([], 'colour = "blue"\n', {}, "unknown setting 'colour'"),
    (["--bind", "127.0.0.1:9000"], "", {"LISTEN_FDS": "1"}, "socket unit sets the address: remove bind"),
    ([], 'bind = "127.0.0.1:9000"\n', {"LISTEN_FDS": "1"}, "socket unit sets the address: remove bind from"),
    (["--policy", "reuseport"], "", {"LISTEN_FDS": "1"}, "policy: reuseport needs sockserve to bind"),
    ([], "", {"LISTEN_FDS": "x"}, "LISTEN_FDS='x' is not a non-negative number"),
    (["--hooks", "no_such_hooks_xyz:setup"], "", {}, "hooks: cannot load 'no_such_hooks_xyz:setup'"),
    (["--worker-python", "/nonexistent/python3"], "", {}, "worker_python: cannot run '/nonexistent/python3'"),
    (["--ssl-certfile", "/nonexistent/cert.pem"], "", {},
     "ssl_certfile /nonexistent/cert.pem: cannot load the certificate and key"),
    (["--log-config", "/nonexistent/log.json"], "", {}, "log_config /nonexistent/log.json: No such file"),
])
def test_what_a_start_refuses_is_exit_2_with_its_line(tmp_path, args, toml, env, message):
    conf = tmp_path / "sockserve.toml"
    conf.write_text("[sockserve]\n" + toml)
    code, out, err = check("--config", str(conf), *args, env=env)
    assert code == 2 and out == "", (code, out, err)
    assert message in one_error(err)


def test_socket_activation_without_bind_is_ok():
    assert check(env={"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin"}) == (0, OK + "\n", "")
    assert check("--socket-activated") == (0, OK + "\n", "")
    code, _, err = check("--socket-activated", "--bind", "127.0.0.1:9000")
    assert code == 2 and one_error(err) == BIND_UNDER_SYSTEMD


@pytest.mark.parametrize(("app", "reason"), [
    ("tests.apps.broken:app", "RuntimeError: this app is broken on purpose"),
    ("no_such_module_xyz:app", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("tests.apps.sample:NOT_AN_APP", "TypeError: a int object is not callable"),
])
def test_app_that_cannot_be_imported_is_exit_6(app, reason):
    code, out, err = check(app)
    assert code == 6 and out == "", (code, out, err)
    assert one_error(err) == f"sockserve: error: cannot load app '{app}': {reason}"


@needs_activate
def test_check_prints_the_line_the_start_prints():
    port = free_port()
    start = socket_activate(("-l", f"127.0.0.1:{port}"), "--bind", "127.0.0.1:9000", stderr=subprocess.PIPE,
                            text=True)
    code, started = failed_activation(start, port)
    checked = check("--bind", "127.0.0.1:9000", env={"LISTEN_FDS": "1"})
    assert code == checked[0] == 2
    assert started == [one_error(checked[2])] == [BIND_UNDER_SYSTEMD]
