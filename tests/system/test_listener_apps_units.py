"""Per-listener apps under a real systemd: the administrator's case of issue 15, part 4.

sockserve.socket (FileDescriptorName=http, as packaged) and a second socket unit,
sockserve-admin.socket (FileDescriptorName=admin, Service=sockserve.service), feed one
service whose file maps each name to its app. A reload that names a socket the units do not
pass fails (`systemctl reload` non-zero, the start's line in the journal) and the old
workers keep serving.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest
from harness import Box, wait_until

pytestmark = pytest.mark.system
SERVICE = "sockserve.service"
CONFIG = "/etc/sockserve/sockserve.toml"
ADMIN_SOCKET = """[Unit]
Description=sockserve admin socket (test)

[Socket]
ListenStream=127.0.0.1:9000
FileDescriptorName=admin
Service=sockserve.service
"""
APPS = 'app = { http = "tests.apps.sample:asgi_app", admin = "tests.apps.sample:stream_handler" }\n'


@pytest.fixture(scope="module")
def box(source_box: Box) -> Box:
    source_box.write_file("/etc/systemd/system/sockserve-admin.socket", ADMIN_SOCKET)
    source_box.path(CONFIG).write_text(APPS + "workers = 2\n" + source_box.path(CONFIG).read_text())
    source_box.run("systemctl", "daemon-reload")
    source_box.run("systemctl", "start", "sockserve.socket", "sockserve-admin.socket")
    source_box.watched = ["sockserve.socket", "sockserve-admin.socket", SERVICE]
    return source_box


def echo(box: Box, port: int) -> bytes:
    with box.connect(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"admin\n")
        return sock.makefile("rb").readline()


def test_two_named_sockets_serve_their_own_apps(box):
    assert box.get(path="/site").startswith("asgi /site")  # the first connection starts the service
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    for _ in range(4):
        assert echo(box, 9000) == b"ADMIN\n"
        assert box.get(path="/site").startswith("asgi /site")
    status = json.loads(box.run("sockserve", "status", "--json").stdout)
    assert sorted(status["listeners"]) == ["admin", "http"]  # the keys: the fds' names


@contextlib.contextmanager
def admin_renamed(box: Box, name: str) -> Iterator[None]:
    """The config maps ``name`` where the socket units pass ``admin``; the file restored after."""
    original = box.path(CONFIG).read_text()
    box.path(CONFIG).write_text(original.replace("admin = ", f"{name} = "))
    try:
        yield
    finally:
        box.path(CONFIG).write_text(original)


def check(box: Box, *args: str) -> subprocess.CompletedProcess:
    """``sockserve check ARGS -c CONFIG`` in the box."""
    return box.run("sockserve", "check", *args, "-c", CONFIG, check=False, timeout=90)


def assert_config_ok(box: Box) -> None:
    ok = check(box, "--socket-activated")
    assert (ok.returncode, ok.stdout.strip()) == (0, "sockserve: configuration ok"), ok.stderr


def test_reload_naming_a_socket_the_units_lack_fails_and_old_workers_serve(box):
    before = box.children(SERVICE)
    with admin_renamed(box, "api"):
        reload = box.run("systemctl", "reload", SERVICE, check=False, timeout=90)
        assert reload.returncode != 0
        line = (f"config file {CONFIG}: app.api: no listener is named 'api' (this master was started "
                "with the sockets admin, http; the service must be restarted to receive another: "
                "systemctl stop it, start the socket unit with FileDescriptorName=api, then start it "
                "(a reload cannot add a socket))")
        assert line in box.journal("-u", SERVICE, "--no-pager")
        assert box.children(SERVICE) == before and echo(box, 9000) == b"ADMIN\n"


def test_pre_reload_check_uses_the_running_masters_sockets(box):
    """The man page's ``sockserve check --socket-activated -c F && systemctl reload``."""
    assert_config_ok(box)
    with admin_renamed(box, "admn"):
        typo = check(box, "--socket-activated")
        assert typo.returncode == 2 and "the running master's sockets are admin, http" in typo.stderr
        plain = check(box)  # no advice to bind
        assert plain.returncode == 2 and "--bind" not in plain.stderr, plain.stderr
        assert "check --socket-activated" in plain.stderr


def test_a_failed_reload_stays_in_status_until_a_reload_succeeds(box):
    assert "; last reload failed: configuration: " in box.show(SERVICE, "StatusText")["StatusText"]
    box.run("systemctl", "reload", SERVICE, timeout=90)
    assert "last reload failed" not in box.show(SERVICE, "StatusText")["StatusText"]


def test_adding_a_socket_takes_a_restart_not_a_reload(box):
    original = box.path(CONFIG).read_text()
    box.run("systemctl", "stop", SERVICE, "sockserve-admin.socket", timeout=90)
    box.path(CONFIG).write_text(original.replace(', admin = "tests.apps.sample:stream_handler"', ""))
    assert box.get(path="/site").startswith("asgi /site")  # started with the http socket only
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    started = box.run("systemctl", "start", "sockserve-admin.socket", check=False)
    assert started.returncode != 0  # systemd: "Socket service sockserve.service already active, refusing."
    box.path(CONFIG).write_text(original)
    assert box.run("systemctl", "reload", SERVICE, check=False, timeout=90).returncode != 0
    assert "the service must be restarted to receive another" in box.journal("-u", SERVICE, "--no-pager")
    assert box.get(path="/site").startswith("asgi /site")  # the old workers keep serving
    box.run("systemctl", "stop", SERVICE, timeout=90)  # the steps of sockserve(8), PER-LISTENER APPS
    box.run("systemctl", "start", "sockserve-admin.socket", SERVICE, timeout=90)
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    assert echo(box, 9000) == b"ADMIN\n" and box.get(path="/site").startswith("asgi /site")


def test_check_with_the_service_stopped_reads_the_socket_units(box):
    """No master to ask: the names are those the socket units will pass (systemctl show)."""
    box.run("systemctl", "stop", SERVICE, timeout=90)
    assert_config_ok(box)
    with admin_renamed(box, "admn"):
        typo = check(box, "--socket-activated")
        assert typo.returncode == 2, typo.stderr
        assert "(the socket units of the service name their sockets admin, http; " in typo.stderr
