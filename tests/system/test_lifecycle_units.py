"""Lifecycle overlaps under a real systemd (issue 9): restart while starting, reloads after a
timed-out one.  The app is tests/apps/slowboot.py, slowed by a drop-in's Environment= or a file."""

from __future__ import annotations

import json
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
                                       'boot_timeout = 4\n')
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
    box.write_file(SLEEP_FILE, "8")  # past boot_timeout = 4
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
