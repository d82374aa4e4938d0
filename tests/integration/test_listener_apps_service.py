"""Per-listener apps as an administrator runs them under systemd (the verifier's findings):
the pre-reload check (``sockserve check --socket-activated``) checks the mapping against the
running master's sockets, a reload naming a socket the master was not started with says to
restart, a failed reload stays in STATUS= until one succeeds, the workers of a failed
generation are said to be stopped (not killed, as by a crash), and ``ready`` is logged after
every worker's ``listening``.  Real masters under ``systemd-socket-activate`` on loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest
from conftest import ROOT, answers, free_port, http_get, terminate, wait_for

from sockserve.master.control import ControlError, request

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="systemd-socket-activate is not installed")]
ASGI, WSGI = "tests.apps.sample:asgi_app", "tests.apps.sample:wsgi_app"
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("SOCKSERVE_", "LISTEN_", "NOTIFY_"))}
ENV["PYTHONPATH"] = str(ROOT)


@pytest.fixture
def short_dir():
    """A directory whose socket paths fit sun_path (108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ss-", dir="/tmp") as path:
        yield path


def activated(conf: str, names: list[tuple[str, int]], notify: str | None = None) -> subprocess.Popen:
    """A master given ``names`` (FileDescriptorName, port) sockets by systemd-socket-activate."""
    env = {**ENV, **({"NOTIFY_SOCKET": notify} if notify else {})}
    listen = [arg for _, port in names for arg in ("-l", f"127.0.0.1:{port}")]
    fdnames = "--fdname=" + ":".join(name for name, _ in names)
    return subprocess.Popen(["systemd-socket-activate", "-E", "PYTHONPATH", "-E", "NOTIFY_SOCKET", *listen,
                             fdnames, sys.executable, "-m", "sockserve", "--log-target", "stderr",
                             "--config", conf], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def started(port: int, control: str) -> dict | None:
    """The first connection starts the master (socket activation); its status once running."""
    return wait_for(lambda: answers(port), 30) and wait_for(lambda: running(control), 30)


def running(control: str) -> dict | None:
    try:
        answer = request(control, {"cmd": "status"}, 2)
    except (ControlError, OSError):
        return None
    return answer if answer.get("state") == "running" else None


def check(*args: str) -> tuple[int, str]:
    """(exit code, the one line) of ``sockserve check ARGS`` as an administrator runs it."""
    done = subprocess.run([sys.executable, "-m", "sockserve", "check", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    return done.returncode, (done.stdout + done.stderr).strip()


def write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def test_pre_reload_check_uses_the_running_masters_socket_names(short_dir):
    http, admin = free_port(), free_port()
    control = f"{short_dir}/control.sock"
    head = f'workers = 2\ncontrol_socket = "{control}"\n'
    good = write(f"{short_dir}/good.toml", head + f'app = {{ http = "{ASGI}", admin = "{WSGI}" }}\n')
    typo = write(f"{short_dir}/typo.toml", head + f'app = {{ http = "{ASGI}", admn = "{WSGI}" }}\n')
    assert check("--socket-activated", "-c", good)[0] == 2  # no master yet: the names are unknown
    assert "--fdnames" in check("--socket-activated", "-c", good)[1]
    proc = activated(good, [("http", http), ("admin", admin)])
    try:
        assert started(http, control), "master did not start"
        assert http_get(admin, "/x") == (200, "wsgi /x\n")
        assert check("--socket-activated", "-c", good) == (0, "sockserve: configuration ok")
        assert check("--socket-activated", "-c", typo) == (2, (
            f"sockserve: error: config file {typo}: app.admn: no listener is named 'admn' (the running "
            "master's sockets are admin, http; a new socket (FileDescriptorName=admn) takes a restart "
            "of the service, not a reload)"))
        assert check("--fdnames", "http,admin", "-c", good) == (0, "sockserve: configuration ok")
        assert check("--fdnames", "http,admin", "-c", typo)[0] == 2
        code, line = check("-c", good)  # forgot --socket-activated: no advice to bind
        assert code == 2 and "--bind" not in line and "check --socket-activated" in line, line
    finally:
        assert terminate(proc) == 0
    log = proc.stderr.read().splitlines()
    listening = [i for i, line in enumerate(log) if " listening on " in line]
    ready = [i for i, line in enumerate(log) if "ready: " in line]
    assert len(listening) == 4 and ready and max(listening) < ready[0], log


@pytest.mark.parametrize("text, message", [
    ("app = {}\n", "app = {}: an empty table names no listener"),
    (f'app = ["{ASGI}"]\n', "app = ["),
])
def test_mappings_the_docs_refuse_fail_check_naming_the_file(short_dir, text, message):
    conf = write(f"{short_dir}/s.toml", text)
    assert check("--fdnames", "http", "-c", conf)[0] == 2
    code, line = check("-b", "127.0.0.1:1", "-c", conf)
    assert code == 2 and line.startswith(f"sockserve: error: config file {conf}: {message}"), line
    assert check("-b", "127.0.0.1:1", "--app", f"={WSGI}") == (
        2, f"sockserve: error: app: '={WSGI}': '' is not a listener name (NAME=MODULE:ATTR, or "
        "MODULE:ATTR for every listener)")


def notified(sock: socket.socket) -> list[str]:
    lines = []
    while True:
        try:
            lines += sock.recv(65536).decode().splitlines()
        except BlockingIOError:
            return lines


def test_reload_of_a_socket_it_lacks_says_restart_and_failures_stay_in_status(short_dir):
    http = free_port()
    control, conf = f"{short_dir}/control.sock", f"{short_dir}/s.toml"
    head = f'workers = 2\ncontrol_socket = "{control}"\n'
    write(conf, head + f'app = {{ http = "{ASGI}" }}\n')
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(f"{short_dir}/notify")
        notify.setblocking(False)
        statuses: list[str] = []
        proc = activated(conf, [("http", http)], f"{short_dir}/notify")
        try:
            assert started(http, control), "master did not start"
            write(conf, head + f'app = {{ http = "{ASGI}", admin = "{WSGI}" }}\n')
            answer = request(control, {"cmd": "reload", "wait": True}, 60)
            assert answer["ok"] is False and "the service must be restarted" in answer["message"]
            assert "this master was started with the sockets http" in answer["message"], answer
            assert running(control)["last_reload_error"] == answer["message"]
            assert wait_for(lambda: any("; last reload failed: configuration: " in line for line
                                        in statuses.extend(notified(notify)) or statuses), 5), statuses
            write(conf, head + 'app = "nosuchmodule_svcfix:app"\n')  # every new worker fails to import
            answer = request(control, {"cmd": "reload", "wait": True}, 60)
            assert answer["ok"] is False and "nosuchmodule_svcfix" in answer["message"], answer
            write(conf, head + f'app = "{ASGI}"\n')
            assert request(control, {"cmd": "reload", "wait": True}, 60)["ok"] is True
            assert running(control)["last_reload_error"] is None
            statuses += notified(notify)
            last = [line for line in statuses if line.startswith("STATUS=")][-1]
            assert "last reload failed" not in last and "generation" in last, statuses
            assert http_get(http, "/")[0] == 200
        finally:
            assert terminate(proc) == 0
    log = proc.stderr.read()
    assert "killed by SIGKILL" not in log, log  # the master's own kill is no crash
