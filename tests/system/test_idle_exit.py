"""``exit_idle_time`` under a real systemd: the service stops when idle, the socket starts it again.

systemd-socket-proxyd's ``--exit-idle-time`` for sockserve: exit 0 after the idle time;
sockserve.socket keeps listening and the next connection starts the service again.
"""

from __future__ import annotations

import time

import pytest
from harness import Box, wait_until

pytestmark = pytest.mark.system
SERVICE = "sockserve.service"
CONFIG = "/etc/sockserve/sockserve.toml"


def test_idle_service_exits_0_and_the_next_connection_starts_it_again(source_box: Box):
    box = source_box
    box.path(CONFIG).write_text(box.path(CONFIG).read_text() + "\nworkers = 1\nexit_idle_time = 2\n")
    box.run("systemctl", "start", "sockserve.socket")
    assert box.get().startswith("hello world from worker")
    first = int(box.show(SERVICE, "MainPID")["MainPID"])
    answered = time.monotonic()
    wait_until(lambda: box.show(SERVICE, "ActiveState")["ActiveState"] == "inactive", 20, "idle exit")
    idle = time.monotonic() - answered
    props = box.show(SERVICE, "Result", "ExecMainStatus")
    assert (props["Result"], props["ExecMainStatus"]) == ("success", "0"), props
    assert box.show("sockserve.socket", "ActiveState")["ActiveState"] == "active"
    assert 1.5 <= idle < 10, idle
    assert box.get().startswith("hello world from worker")  # socket activation, again
    assert int(box.show(SERVICE, "MainPID")["MainPID"]) not in (0, first)
    assert "no connection or request for 2s: stopping" in box.journal("-u", SERVICE)
