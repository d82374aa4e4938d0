"""sockserve's own units in a real systemd, running the source tree with Debian's python3.

The box binds the repository read-only and runs ``/usr/bin/python3 -m sockserve``,
so these tests also prove sockserve works with Debian 12's uvicorn, uvloop and
python-systemd. Tests share one box and run in file order.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from harness import Box, wait_until
from loadgen import BackgroundLoad

pytestmark = pytest.mark.system
SERVICE = "sockserve.service"
CONFIG = "/etc/sockserve/sockserve.toml"


@pytest.fixture(scope="module")
def box(source_box: Box) -> Box:
    source_box.run("systemctl", "start", "sockserve.socket")
    return source_box


def main_pid(box: Box) -> int:
    return int(box.show(SERVICE, "MainPID")["MainPID"])


def assert_clean(summary: dict) -> None:
    assert summary["ok"] > 0, summary
    assert (summary["refused"], summary["bad_status"], summary["errors"]) == (0, 0, {}), summary


def test_connection_activates_notify_service_with_status(box):
    assert box.show(SERVICE, "ActiveState")["ActiveState"] == "inactive"
    body = box.get()
    assert re.match(r"hello world from worker \d+ \(pid \d+\)", body), body
    # rr may answer before every worker listens; READY=1 (active) follows
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    props = box.show(SERVICE, "Type", "ActiveState", "SubState", "StatusText")
    assert (props["Type"], props["ActiveState"], props["SubState"]) == ("notify", "active", "running")
    assert "worker" in props["StatusText"], props
    assert "Active: active (running)" in box.run("systemctl", "status", "--no-pager", SERVICE).stdout


def test_reload_under_load_has_no_errors_and_new_workers(box):
    box.get()
    before = box.children(SERVICE)
    load = BackgroundLoad(box, count=3000, seconds=40)
    time.sleep(0.5)
    box.run("systemctl", "reload", SERVICE)
    after = wait_until(lambda: (p := box.children(SERVICE)) and not p & before and p, 20, "a new generation")
    time.sleep(0.5)
    assert_clean(load.finish())
    assert len(after) == len(before)


def test_reload_with_broken_app_fails_and_old_workers_keep_serving(box):
    original = box.path(CONFIG).read_text()
    before = box.children(SERVICE)
    box.path(CONFIG).write_text(original + '\napp = "no.such:app"\n')
    try:
        reload = box.run("systemctl", "reload", SERVICE, check=False, timeout=90)
        assert reload.returncode != 0
        assert box.show(SERVICE, "ActiveState")["ActiveState"] == "active"
        assert box.children(SERVICE) == before
        pid = int(re.search(r"\(pid (\d+)\)", box.get()).group(1))
        assert pid in before
    finally:
        box.path(CONFIG).write_text(original)
    box.run("systemctl", "reload", SERVICE)


def test_status_and_reload_without_flags_as_root(box):
    """An admin's `sockserve status|reload`: the packaged service's /run/sockserve/control.sock."""
    box.get()
    status = box.run("sockserve", "status", check=False)
    assert status.returncode == 0 and "policy rr" in status.stdout, status.stdout + status.stderr
    reload = box.run("sockserve", "reload", check=False, timeout=90)
    assert reload.returncode == 0, reload.stdout + reload.stderr


def test_access_log_reaches_the_journal_with_fields(box):
    original = box.path(CONFIG).read_text()
    box.path(CONFIG).write_text(original + "\naccess_log = true\n")
    try:
        box.run("systemctl", "reload", SERVICE)
        with box.connect(("127.0.0.1", 8000), timeout=20) as sock:
            sock.sendall(b"GET /journal?probe=1 HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass

        def access_entries():
            out = box.journal("-u", SERVICE, "SOCKSERVE_EVENT=access", "-o", "json")
            return [e for e in map(json.loads, out.splitlines()) if e.get("QUERY_STRING") == "probe=1"]

        entry = wait_until(access_entries, 15, "an access entry in the journal")[0]
        assert (entry["REQUEST_METHOD"], entry["REQUEST_PATH"], entry["HTTP_STATUS"]) == \
            ("GET", "/journal?probe=1", "200")
        assert int(entry["DURATION_US"]) > 0 and int(entry["RESPONSE_BYTES"]) > 0
        assert int(entry["WORKER_ID"]) >= 1 and entry["REMOTE_ADDR"].startswith("127.0.0.1:")
        assert '"GET /journal?probe=1 HTTP/1.1" 200' in entry["MESSAGE"]
    finally:
        box.path(CONFIG).write_text(original)
    box.run("systemctl", "reload", SERVICE)


def test_restart_under_load_refuses_nothing(box):
    old = main_pid(box)
    load = BackgroundLoad(box, count=3000, seconds=40)
    time.sleep(0.5)
    box.run("systemctl", "restart", SERVICE)
    time.sleep(0.5)
    summary = load.finish()
    assert summary["ok"] > 0 and (summary["refused"], summary["bad_status"]) == (0, 0), summary
    assert main_pid(box) not in (0, old)


def test_killed_worker_is_logged_with_fields_and_replaced(box):
    box.get()
    before = box.children(SERVICE)
    victim = min(before)
    box.run("kill", "-9", str(victim))

    def exit_entry():
        out = box.journal("-u", SERVICE, "SOCKSERVE_EVENT=worker_exit", "-o", "json")
        entries = [json.loads(line) for line in out.splitlines()]
        return [e for e in entries if e.get("WORKER_PID") == str(victim)]

    entry = wait_until(exit_entry, 10, f"a worker_exit journal entry for pid {victim}")[0]
    assert "KILL" in entry["MESSAGE"] or "9" in entry["MESSAGE"], entry["MESSAGE"]
    wait_until(lambda: len(box.children(SERVICE) - {victim}) == len(before), 15, "a replacement worker")


def test_frozen_master_is_killed_by_watchdog(box):
    dropin = "/etc/systemd/system/sockserve.service.d/90-test-watchdog.conf"
    box.write_file(dropin, "[Service]\nWatchdogSec=2\nTimeoutAbortSec=5\n")
    box.run("systemctl", "daemon-reload")
    try:
        box.run("systemctl", "restart", SERVICE)
        box.run("kill", "-STOP", str(main_pid(box)))
        wait_until(lambda: "Failed with result 'watchdog'" in box.journal("-u", SERVICE, "-o", "cat"),
                   20, "systemd's watchdog verdict")
    finally:
        box.path(dropin).unlink()
        box.run("systemctl", "daemon-reload")
    box.run("systemctl", "restart", SERVICE)
    assert "hello world" in box.get()


def test_stop_is_graceful_and_exits_0(box):
    box.get()
    box.run("systemctl", "stop", SERVICE)
    props = box.show(SERVICE, "Result", "ExecMainCode", "ExecMainStatus", "ActiveState")
    assert props == {"Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0",
                     "ActiveState": "inactive"}
    assert "hello world" in box.get()  # the socket stayed: the next connection activates it again


def test_template_instance_serves_its_own_config(box):
    box.write_file("/etc/sockserve/api.toml", "workers = 1\n")
    box.run("systemctl", "start", "sockserve@api.socket")
    listen = box.show("sockserve@api.socket", "Listen")["Listen"].split()[0]
    addr = listen if listen.startswith("/") else tuple(listen.rsplit(":", 1))
    addr = addr if isinstance(addr, str) else (addr[0], int(addr[1]))
    with box.connect(addr, timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        assert "hello world from worker" in sock.recv(65536).decode()
    assert len(box.children("sockserve@api.service")) == 1
    box.run("systemctl", "stop", "sockserve@api.socket", "sockserve@api.service")
