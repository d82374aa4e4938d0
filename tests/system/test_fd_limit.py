"""The units' LimitNOFILE= reaches the master and its workers in a real systemd (issue 10)."""

from __future__ import annotations

import pytest
from harness import Box, wait_until

pytestmark = pytest.mark.system
SERVICE = "sockserve.service"


def nofile(box: Box, pid: int) -> tuple[str, str]:
    """(soft, hard) 'Max open files' of ``pid`` inside the box."""
    limits = box.run("cat", f"/proc/{pid}/limits").stdout
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return soft, hard


def test_master_and_workers_run_with_the_units_fd_limit(source_box):
    box = source_box
    box.run("systemctl", "start", "sockserve.socket")
    box.get()  # socket activation
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    assert box.show(SERVICE, "LimitNOFILE")["LimitNOFILE"] == "65536"
    master = int(box.show(SERVICE, "MainPID")["MainPID"])
    workers = [int(p) for p in box.run("pgrep", "-P", str(master)).stdout.split()]
    assert workers
    # systemd cannot raise a limit past its own hard one (this box runs under the host's)
    ceiling = min(65536, int(nofile(box, 1)[1]))
    for pid in [master, *workers]:
        assert nofile(box, pid) == (str(ceiling), str(ceiling)), pid
    assert ceiling > 1024  # not the default soft limit a unit without LimitNOFILE= gets
