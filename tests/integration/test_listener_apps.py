"""Per-listener apps (issue 15, part 4): each named listener serves its own app.

Real masters and workers on loopback: named binds (``--bind NAME=ADDR``) and systemd's named
fds (``systemd-socket-activate --fdname``), rr and shared, the command-line, TOML and
environment forms, bad mappings (one line, exit 2, at start, in ``sockserve check`` and on
a reload, whose old workers keep serving), and a reload that changes one listener's app.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, answers, connects, free_port, http_get, needs_activate, terminate, wait_for

from sockserve.master.control import ControlError, request

pytestmark = pytest.mark.timeout(90)
ASGI, WSGI, STREAM = (f"tests.apps.sample:{name}" for name in ("asgi_app", "wsgi_app", "stream_handler"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SOCKSERVE_", "LISTEN_"))}
ENV["PYTHONPATH"] = str(ROOT)


def start(*args: str, env: dict | None = None, activate: tuple[str, ...] = ()) -> subprocess.Popen:
    prefix = ["systemd-socket-activate", "-E", "PYTHONPATH", *activate] if activate else []
    return subprocess.Popen([*prefix, sys.executable, "-m", "sockserve", "--log-target", "stderr", *args],
                            cwd=ROOT, env={**ENV, **(env or {})}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def status(control: str) -> dict | None:
    try:
        return request(control, {"cmd": "status"}, 2)
    except (ControlError, OSError):
        return None


def running(control: str) -> dict | None:
    s = status(control)
    return s if s and s["state"] == "running" else None


def listening_pids(control: str) -> set[int]:
    return {w["pid"] for w in status(control)["workers"] if w["state"] == "listening"}


def echo(port: int, line: bytes = b"ping\n") -> bytes:
    """The stream handler's answer: the line upper-cased."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(line)
        return s.makefile("rb").readline()


def one_error(proc: subprocess.Popen) -> tuple[int, str]:
    """(exit code, the one sockserve line) of a start that must fail."""
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        terminate(proc)
    ours = [line for line in err.splitlines() if line.startswith("sockserve")]  # not the activator's
    assert len(ours) == 1, err
    return proc.returncode, ours[0]


# ------------------------------------------------------------ serving
@pytest.mark.parametrize("policy", ["rr", "shared", "reuseport"])
def test_named_binds_serve_their_own_apps(tmp_path, policy):
    http, admin, slow, plain = free_port(), free_port(), free_port(), free_port()
    control = str(tmp_path / "control.sock")
    proc = start("-w", "2", "--policy", policy, "--control-socket", control,
                 "--bind", f"http=127.0.0.1:{http}", "--bind", f"admin=127.0.0.1:{admin}",
                 "--bind", f"slow=127.0.0.1:{slow}", "--bind", f"127.0.0.1:{plain}",  # unnamed: default
                 "--app", f"http={ASGI}", "--app", f"admin={STREAM}",
                 "--app", "slow=tests.apps.sample:slow_app", WSGI,
                 "--request-timeout", "1", "--max-header-size", "1024")
    try:
        assert wait_for(lambda: running(control), 20), proc.stderr
        assert status(control)["listeners"] == ["http", "admin", "slow", f"127.0.0.1:{plain}"]
        for _ in range(4):  # both workers: every one serves every listener with its app
            assert http_get(http, "/a") == (200, "asgi /a lifespan=lifespan.startup\n")
            assert echo(admin) == b"PING\n"
            assert http_get(plain, "/b") == (200, "wsgi /b\n")
        # the guards and limits wrap every app, not one: request_timeout, max_header_size
        assert http_get(slow, "/?s=0") == (200, "slept 0.0\n")
        assert http_get(slow, "/?s=3")[0] == 504
        assert http_get(plain, "/" + "x" * 2048)[0] in (431, 400)  # httptools, h11
    finally:
        assert terminate(proc) == 0


@needs_activate
@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_systemd_named_fds_serve_their_own_apps(tmp_path, policy):
    http, admin = free_port(), free_port()
    control = str(tmp_path / "control.sock")
    conf = tmp_path / "sockserve.toml"  # the file's form: a table, name -> app
    conf.write_text(f'[sockserve]\nworkers = 2\npolicy = "{policy}"\n'
                    f'app = {{ http = "{ASGI}", admin = "{STREAM}" }}\n')
    proc = start("--config", str(conf), "--control-socket", control,
                 activate=("-l", f"127.0.0.1:{http}", "-l", f"127.0.0.1:{admin}", "--fdname=http:admin"))
    try:
        assert wait_for(lambda: answers(http), 20)  # the first connection starts the master
        assert wait_for(lambda: running(control), 20)
        assert status(control)["listeners"] == ["http", "admin"]
        for _ in range(4):
            assert http_get(http, "/x")[1].startswith("asgi /x")
            assert echo(admin, b"admin\n") == b"ADMIN\n"
    finally:
        assert terminate(proc) == 0


@needs_activate
def test_one_name_on_several_sockets_serves_its_app_on_each(tmp_path):
    """systemd names every ListenStream= of a unit alike: their keys are their addresses, and
    the name's app serves them all."""
    one, two, admin = free_port(), free_port(), free_port()
    control = str(tmp_path / "control.sock")
    proc = start("-w", "1", "--control-socket", control, "--app", f"http={ASGI}", "--app", f"admin={STREAM}",
                 activate=("-l", f"127.0.0.1:{one}", "-l", f"127.0.0.1:{two}", "-l", f"127.0.0.1:{admin}",
                           "--fdname=http:http:admin"))
    try:
        assert wait_for(lambda: answers(one), 20)
        assert wait_for(lambda: running(control), 20)
        assert status(control)["listeners"] == [f"127.0.0.1:{one}", f"127.0.0.1:{two}", "admin"]
        assert http_get(one)[1].startswith("asgi /") and http_get(two)[1].startswith("asgi /")
        assert echo(admin) == b"PING\n"
    finally:
        assert terminate(proc) == 0


def test_reload_changes_one_listeners_app_and_refuses_a_bad_mapping(tmp_path):
    http, admin = free_port(), free_port()
    control, conf = str(tmp_path / "control.sock"), tmp_path / "sockserve.toml"
    head = f'[sockserve]\nworkers = 1\nbind = ["http=127.0.0.1:{http}", "admin=127.0.0.1:{admin}"]\n'
    conf.write_text(head + f'app = {{ http = "{ASGI}", admin = "{STREAM}" }}\n')
    proc = start("--config", str(conf), "--control-socket", control)
    try:
        assert wait_for(lambda: running(control), 20), proc.stderr
        assert echo(admin) == b"PING\n"
        before = listening_pids(control)
        conf.write_text(head + f'app = {{ http = "{ASGI}", admin = "{WSGI}" }}\n')
        answer = request(control, {"cmd": "reload", "wait": True}, 30)
        assert answer["ok"] is True, answer
        assert wait_for(lambda: listening_pids(control) and not listening_pids(control) & before, 10)
        assert http_get(admin, "/now") == (200, "wsgi /now\n")  # the new generation's app
        assert http_get(http, "/")[1].startswith("asgi /")  # the other listener's is unchanged
        serving = listening_pids(control)
        for mapping, message in BAD_RELOADS:
            conf.write_text(head + mapping)
            answer = request(control, {"cmd": "reload", "wait": True}, 30)
            message = message.format(admin=admin, conf=conf)
            assert answer["ok"] is False and answer["message"] == f"configuration: {message}", answer
            assert listening_pids(control) == serving  # the old workers keep serving
            assert http_get(admin, "/still") == (200, "wsgi /still\n")
    finally:
        assert terminate(proc) == 0


BAD_RELOADS = [  # the start's lines, as the file's mapping gives them (bad_starts: the CLI's)
    (f'app = {{ http = "{ASGI}", api = "{WSGI}" }}\n',
     "config file {conf}: app.api: no listener is named 'api' (bind names: admin, http; name one "
     'in the file: bind = ["api=HOST:PORT"])'),
    (f'app = {{ http = "{ASGI}" }}\n',
     "config file {conf}: app: listener 'admin' (127.0.0.1:{admin}) has no app: the mapping names "
     "http; name it too, or add a default app (\"*\" = \"MODULE:ATTR\" in the app table)"),
]


# ------------------------------------------------------------ bad input: one line, exit 2
def bad_starts() -> list[tuple[list[str], str]]:
    a, b = "http=127.0.0.1:1", "admin=127.0.0.1:2"  # never bound: the checks come first
    return [
        (["-b", a, "-b", b, "--app", f"http={ASGI}", "--app", f"api={WSGI}"],
         "app: no listener is named 'api' (bind names: admin, http; name one with --bind api=HOST:PORT)"),
        (["-b", a, "-b", b, "--app", f"http={ASGI}"], "app: listener 'admin' (127.0.0.1:2) has no app: "
         "the mapping names http; name it too, or add a default app (--app MODULE:ATTR)"),
        (["-b", a, "--app", f"http={ASGI}", "--app", f"http={WSGI}"],
         f"app: listener 'http' is given two apps ({ASGI}, {WSGI})"),
        (["-b", a, "-b", "http=127.0.0.1:3"],
         "bind: the name 'http' is given twice (http=127.0.0.1:1, http=127.0.0.1:3)"),
        (["-b", a, ASGI, "--app", WSGI], f"app: the default app is given twice ({ASGI}, {WSGI})"),
        (["-b", "ht:tp=127.0.0.1:1", ASGI], "bind: 'ht:tp=127.0.0.1:1': 'ht:tp' is not a listener "
         "name (1-255 characters, no ':', '=', ',' or spaces)"),
    ]


@pytest.mark.parametrize("args, message", bad_starts())
def test_bad_mapping_is_one_line_exit_2_at_start_and_in_check(args, message):
    assert one_error(start(*args)) == (2, f"sockserve: error: {message}")
    done = subprocess.run([sys.executable, "-m", "sockserve", "check", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (2, f"sockserve: error: {message}\n")


def test_environment_form_is_checked_like_the_others():
    env = {**ENV, "SOCKSERVE_BIND": "http=127.0.0.1:1,admin=127.0.0.1:2",
           "SOCKSERVE_APP": f"http={ASGI},admin={STREAM}"}
    done = subprocess.run([sys.executable, "-m", "sockserve", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "sockserve: configuration ok\n"), done.stderr
    env["SOCKSERVE_APP"] = f"http={ASGI},admin=tests.apps.broken:app"  # check loads each app
    done = subprocess.run([sys.executable, "-m", "sockserve", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    broken = "sockserve: error: cannot load app 'tests.apps.broken:app' (listener admin): RuntimeError"
    assert done.returncode == 6 and done.stderr.startswith(broken), done.stderr


@needs_activate
def test_mapping_must_fit_listen_fdnames_at_start_and_in_check():
    port = free_port()
    message = ("sockserve: error: app: no listener is named 'admin' (LISTEN_FDNAMES has http; "
               "set FileDescriptorName=admin on a socket unit of the service)")
    proc = start("--app", f"http={ASGI}", "--app", f"admin={STREAM}",
                 activate=("-l", f"127.0.0.1:{port}", "--fdname=http"))
    assert wait_for(lambda: connects(port), 10)  # a connection makes it start the master
    assert one_error(proc) == (2, message)
    env = {**ENV, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "http"}  # as ExecStartPre= sees them
    done = subprocess.run([sys.executable, "-m", "sockserve", "check", "--app", f"http={ASGI}",
                           "--app", f"admin={STREAM}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stderr) == (2, message + "\n")


@needs_activate
def test_accept_yes_serves_the_app_of_the_connections_name():
    port = free_port()
    proc = start("--app", f"admin={STREAM}", ASGI,  # Accept=yes: one connection, served in-process
                 activate=("-l", f"127.0.0.1:{port}", "--accept", "--fdname=admin"))
    try:
        assert wait_for(lambda: connects(port), 10)
        assert echo(port, b"one\n") == b"ONE\n"  # the admin app, not the default
    finally:
        terminate(proc)
