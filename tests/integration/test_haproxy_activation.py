"""What HAProxy sees when its agent check starts a stopped, socket-activated host (issue 16).

A launcher does what systemd's sockserve-agent.socket does: it holds the listening sockets
(HTTP and the agent's), waits until a connection is queued on the agent's, and only then
starts sockserve with them (``LISTEN_FDS``).  The check that woke it waits for the new
master's line: with ``agent-inter 200ms`` alone that is also the check's timeout, so whether
HAProxy gives up (``L7TOUT``) depends on how fast the master starts (a figure, printed); with
``timeout check 3s`` (docs/scaling.md) the same check is always answered.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, free_port, terminate, wait_for

from tests.haproxyharness import HAProxy, Host, missing_reason

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")

LAUNCH_ON_AGENT = r"""
import os, select, socket, sys
socks = []
for port in (int(sys.argv[1]), int(sys.argv[2])):  # what the socket units do: bind, listen
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    socks.append(s)
select.select([socks[1]], [], [], 60)  # an agent check is queued: start the service
print("activated", flush=True)
high = [os.dup2(s.fileno(), 20 + i) for i, s in enumerate(socks)]
for fd, old in enumerate(high, 3):
    os.dup2(old, fd)
    os.set_inheritable(fd, True)
os.environ.update(LISTEN_FDS="2", LISTEN_FDNAMES="http:agent", LISTEN_PID=str(os.getpid()))
os.execv(sys.executable, [sys.executable, "-m", "sockserve", *sys.argv[3:]])
"""


@pytest.mark.parametrize("timeout_check", ["", "3s"])
def test_the_check_that_activates_the_host_is_answered_only_with_timeout_check(tmp_path, timeout_check):
    http, agent = free_port(), free_port()
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCH_ON_AGENT, str(http), str(agent), "--workers",
                                 "2", "--log-target", "stderr", "http=tests.apps.sample:asgi_app"],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    proxy = HAProxy(tmp_path, [Host("h1", http, agent)], timeout_check=timeout_check)
    try:
        assert launcher.stdout.readline().strip() == "activated"  # HAProxy's first agent check
        seen: list[str] = []

        def agent_status() -> str:
            row = proxy.stats()["h1"]
            if not seen or seen[-1] != row["agent_status"]:
                seen.append(row["agent_status"])
            return row["agent_status"]

        assert wait_for(lambda: agent_status() == "L7OK" and proxy.weights()["h1"] == ("UP", 100), 15), seen
        print(f"\nagent-inter 200ms{', timeout check 3s' if timeout_check else ''}: agent_status {seen}")
        if timeout_check:
            assert "L7TOUT" not in seen, seen  # the waking check was answered
        # without it, L7TOUT appears only when the master took longer than agent-inter to answer
    finally:
        proxy.stop()
        assert terminate(launcher) == 0
