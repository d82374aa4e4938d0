"""A stop supersedes a reload: ``sockserve reload --wait`` then exits 0 (issue: stop during reload).

systemd runs ``ExecReload=sockserve reload --wait`` as the unit's control process; a
``systemctl stop`` during the reload sends SIGTERM to the master and to that command, and
a control process that exits non-zero or dies of the signal leaves the unit "failed".
The two ways the command learns of the stop are tested here with real processes: its
own SIGTERM, and the master's answer when the master is stopped first.  The unit itself
is tested in tests/system/test_lifecycle_units.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from conftest import ROOT, wait_for

pytestmark = pytest.mark.timeout(90)
APP = ("tests.apps.slowboot:app", "--workers", "1")


def reload_wait(server) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sockserve", "reload", "--wait",
                             "--control-socket", server.control], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def slow_reload_running(start_server, tmp_path):
    """A server whose reload is under way (the new generation imports for 20 s) and its ctl."""
    sleep_file = tmp_path / "sleep"
    sleep_file.write_text("0")
    server = start_server(*APP, env={"SLOWBOOT_SLEEP_FILE": str(sleep_file)})
    sleep_file.write_text("20")
    ctl = reload_wait(server)
    assert wait_for(lambda: server.status()["state"] == "reloading", 15), server.stderr()
    return server, ctl


def test_sigterm_to_reload_wait_exits_0_and_the_reload_goes_on(start_server, tmp_path):
    server, ctl = slow_reload_running(start_server, tmp_path)
    ctl.send_signal(signal.SIGTERM)
    out, err = ctl.communicate(timeout=10)
    assert ctl.returncode == 0, (out, err)
    assert "reload superseded by SIGTERM" in out and "Traceback" not in err, (out, err)
    assert server.status()["state"] == "reloading"  # the command stopped waiting, nothing more
    assert server.get()[0] == 200


def test_reload_wait_answered_by_the_masters_stop_exits_0(start_server, tmp_path):
    server, ctl = slow_reload_running(start_server, tmp_path)
    server.signal(signal.SIGTERM)  # only the master: the command learns it from the answer
    out, err = ctl.communicate(timeout=20)
    assert ctl.returncode == 0, (out, err)
    assert out.strip() == "sockserve: reload superseded by a stop: stopping", (out, err)
    assert server.proc.wait(20) == 0, server.stderr()


def test_a_reload_that_fails_on_its_own_still_exits_1(start_server, tmp_path):
    """The other side of the line: only a stop makes a reload that did not happen exit 0."""
    sleep_file, config = tmp_path / "sleep", tmp_path / "sockserve.toml"
    sleep_file.write_text("0")
    config.write_text("boot_timeout = 60\n")  # the start, on a loaded machine
    server = start_server(*APP, "--config", str(config), env={"SLOWBOOT_SLEEP_FILE": str(sleep_file)})
    sleep_file.write_text("6")
    config.write_text("boot_timeout = 2\n")  # the reload's generation misses it
    ctl = reload_wait(server)
    out, err = ctl.communicate(timeout=30)
    assert ctl.returncode == 1 and "did not listen within 2s" in err, (out, err)
    assert "superseded" not in out + err


def test_sigterm_to_master_and_command_together_exits_0(start_server, tmp_path):
    """What `systemctl stop` does (master first, then the control process): whichever the
    command sees first, the answer or its own SIGTERM, even while it exits, it exits 0."""
    server, ctl = slow_reload_running(start_server, tmp_path)
    server.signal(signal.SIGTERM)
    ctl.send_signal(signal.SIGTERM)
    out, err = ctl.communicate(timeout=20)
    assert ctl.returncode == 0, (out, err)
    assert "reload superseded by" in out and "Traceback" not in err, (out, err)
    assert server.proc.wait(20) == 0, server.stderr()
