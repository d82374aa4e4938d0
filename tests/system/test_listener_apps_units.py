"""Per-listener apps under a real systemd: the administrator's case of issue 15, part 4.

sockserve.socket (FileDescriptorName=http, as packaged) and a second socket unit,
sockserve-admin.socket (FileDescriptorName=admin, Service=sockserve.service), feed one
service whose file maps each name to its app. A reload that names a socket the units do not
pass fails (`systemctl reload` non-zero, the start's line in the journal) and the old
workers keep serving.
"""

from __future__ import annotations

import json

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


def get(box: Box, port: int) -> str:
    with box.connect(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /site HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200"), head
    return body


def echo(box: Box, port: int) -> bytes:
    with box.connect(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"admin\n")
        return sock.makefile("rb").readline()


def workers(box: Box) -> set[int]:
    main = box.show(SERVICE, "MainPID")["MainPID"]
    return {int(p) for p in box.run("pgrep", "-P", main, check=False).stdout.split()}


def test_two_named_sockets_serve_their_own_apps(box):
    assert get(box, 8000).startswith("asgi /site")  # the first connection starts the service
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    for _ in range(4):
        assert echo(box, 9000) == b"ADMIN\n"
        assert get(box, 8000).startswith("asgi /site")
    status = json.loads(box.run("sockserve", "status", "--json").stdout)
    assert sorted(status["listeners"]) == ["admin", "http"]  # the keys: the fds' names


def test_reload_naming_a_socket_the_units_lack_fails_and_old_workers_serve(box):
    before = workers(box)
    original = box.path(CONFIG).read_text()
    box.path(CONFIG).write_text(original.replace("admin = ", "api = "))
    try:
        reload = box.run("systemctl", "reload", SERVICE, check=False, timeout=90)
        assert reload.returncode != 0
        line = ("app: no listener is named 'api' (LISTEN_FDNAMES has admin, http; set "
                "FileDescriptorName=api on a socket of the socket unit)")
        assert line in box.journal("-u", SERVICE, "--no-pager")
        assert workers(box) == before and echo(box, 9000) == b"ADMIN\n"
    finally:
        box.path(CONFIG).write_text(original)
