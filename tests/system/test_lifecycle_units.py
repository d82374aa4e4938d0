"""Lifecycle overlaps under a real systemd (issue 9): restart while starting, reloads after a
timed-out one.  The app is tests/apps/slowboot.py, slowed by a drop-in's Environment= or a file."""

from __future__ import annotations

import json
import threading
import time

import pytest
from harness import Box, wait_until
from loadgen import BackgroundLoad

pytestmark = pytest.mark.system
SERVICE = "sockserve.service"
CONFIG = "/etc/sockserve/sockserve.toml"
DROPIN = "/etc/systemd/system/sockserve.service.d/90-test-slowboot.conf"
SLEEP_FILE = "/run/slowboot-sleep"


@pytest.fixture(scope="module")
def box(source_box: Box) -> Box:
    source_box.write_file(SLEEP_FILE, "0")
    source_box.write_file(DROPIN, f"[Service]\nEnvironment=SLOWBOOT_SLEEP_FILE={SLEEP_FILE}\n")
    original = source_box.path(CONFIG).read_text()
    source_box.path(CONFIG).write_text(original + '\napp = "tests.apps.slowboot:app"\nworkers = 2\n'
                                       'boot_timeout = 8\n')  # a loaded box's boot took 6 s
    source_box.run("systemctl", "daemon-reload")
    source_box.run("systemctl", "start", "sockserve.socket")
    source_box.run("systemctl", "start", SERVICE, timeout=60)
    return source_box


def test_restart_while_still_starting_is_quick_and_refuses_nothing(box):
    box.write_file(SLEEP_FILE, "2")
    box.run("systemctl", "restart", "--no-block", SERVICE)

    def importing() -> bool:  # the new master's workers are importing the app
        pid = int(box.show(SERVICE, "MainPID")["MainPID"])
        children = box.run("pgrep", "-P", str(pid), check=False).stdout.split() if pid else []
        return box.show(SERVICE, "ActiveState")["ActiveState"] == "activating" and len(children) == 2
    wait_until(importing, 10, "a start with its workers importing the app")
    box.write_file(SLEEP_FILE, "0.5")  # the next start is quicker: the stop is what is measured
    load = BackgroundLoad(box, count=200, seconds=15)
    started = time.monotonic()
    box.run("systemctl", "restart", SERVICE, timeout=60)
    took = time.monotonic() - started
    summary = load.finish()
    box.write_file(SLEEP_FILE, "0")
    print(f"\nrestart while starting took {took:.2f}s; {summary}")
    assert took < 5
    assert summary["ok"] > 0 and (summary["refused"], summary["bad_status"]) == (0, 0), summary


def test_three_reloads_after_a_timed_out_one_all_succeed(box):
    box.run("systemctl", "restart", SERVICE, timeout=60)
    box.write_file(SLEEP_FILE, "16")  # past boot_timeout = 8
    failed = box.run("systemctl", "reload", SERVICE, check=False, timeout=90)
    assert failed.returncode != 0
    assert box.show(SERVICE, "ActiveState")["ActiveState"] == "active"
    box.write_file(SLEEP_FILE, "0")
    for _ in range(3):
        done = box.run("systemctl", "reload", SERVICE, check=False, timeout=90)
        assert done.returncode == 0, box.diagnostics(SERVICE)
    out = box.run("sockserve", "status", "--json", "--control-socket", "/run/sockserve/control.sock").stdout
    status = json.loads(out)
    assert status["generation"] == 5 and {w["generation"] for w in status["workers"]} == {5}, status


def _in_flight(box: Box, path: str, results: list, sent: list | None = None) -> threading.Thread:
    """GET ``path`` in a thread (a connection of the box's netns); its status or error goes to ``results``;
    ``sent`` gets its path once the request is on its way."""
    def get() -> None:
        try:
            with box.connect(("127.0.0.1", 8000), timeout=30) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n".encode())
                if sent is not None:
                    sent.append(path)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            results.append(data.split(b" ", 2)[1].decode() if data else "no answer")
        except OSError as exc:
            results.append(repr(exc))
    thread = threading.Thread(target=get)
    thread.start()
    return thread


def _accept_queue(box: Box) -> int:
    """Connections waiting in the accept queue of sockserve.socket's port 8000 (its Recv-Q)."""
    out = box.run("ss", "-ltnH", "sport = :8000").stdout.split()
    return int(out[1]) if out else -1


def test_stop_during_a_reload_ends_inactive_not_failed(box):
    """`systemctl stop` while ExecReload=sockserve reload --wait waits: the stop supersedes it."""
    box.run("systemctl", "restart", SERVICE, timeout=60)
    box.write_file(SLEEP_FILE, "5")  # the new generation imports for 5 s (boot_timeout = 8)
    since = box.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    box.run("systemctl", "reload", "--no-block", SERVICE)

    def reloading() -> bool:  # ExecReload runs and the new workers import the app
        props = box.show(SERVICE, "ActiveState", "ControlPID", "MainPID")
        children = box.run("pgrep", "-P", props["MainPID"], check=False).stdout.split()
        return props["ActiveState"] == "reloading" and props["ControlPID"] != "0" and len(children) == 4
    wait_until(reloading, 10, "a reload with its new workers importing the app")
    during: list = []  # requests made while the reload runs: the old generation answers them
    for _ in range(5):
        _in_flight(box, "/", during).join(30)
    slow, sent = [], []
    threads = [_in_flight(box, "/?s=1.5", slow, sent) for _ in range(3)]  # the old generation's, in flight
    # once sent and taken from the socket's queue (a stop before: refused, or left for the next start)
    wait_until(lambda: len(sent) == 3 and _accept_queue(box) == 0, 10, "the slow requests accepted")
    assert box.show(SERVICE, "ActiveState")["ActiveState"] == "reloading"  # the stop comes mid-reload
    box.run("systemctl", "stop", SERVICE, timeout=60)
    for thread in threads:
        thread.join(30)
    box.write_file(SLEEP_FILE, "0")
    props = box.show(SERVICE, "ActiveState", "Result")
    journal = box.journal("-u", SERVICE, "--since", since, "-o", "cat")
    assert (props["ActiveState"], props["Result"]) == ("inactive", "success"), journal[-3000:]
    assert "reload superseded by" in journal, journal[-3000:]  # ExecReload ran into the stop
    assert (during, slow) == (["200"] * 5, ["200"] * 3)
    assert box.run("pgrep", "-f", "sockserve", check=False).stdout == ""  # no process left
    assert "Killing process" not in journal, journal[-3000:]  # systemd's SIGKILL of leftovers
