"""sockserve.cluster under SCHED_RR when workers listen on different addresses (verifier v15
e1): one policy serves every handle, so nobody serves them; the primary leaves them in the
kernel's backlog and warns once per handle (docs/node-cluster.md). SCHED_NONE serves them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest
from conftest import ROOT, free_port, http_get, terminate, wait_for

pytestmark = pytest.mark.timeout(60)


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _accept_queue(port: int) -> int:
    """Connections waiting in the kernel's accept queue of 127.0.0.1:``port`` (/proc/net/tcp:
    a LISTEN socket's rx_queue), i.e. completed handshakes nobody has accepted."""
    with open("/proc/net/tcp") as table:
        for row in list(table)[1:]:
            fields = row.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
                return int(fields[4].split(":")[1], 16)
    raise LookupError(port)


@pytest.mark.parametrize("policy", ["rr", "none"])
def test_workers_listening_on_different_ports(policy):
    # verifier v15 e1: worker 1 on port A only, worker 2 on port B only.  SCHED_NONE serves
    # each; SCHED_RR (one policy for every handle, a known limitation) serves neither, leaves
    # the connections in the kernel's backlog and says so once per handle
    a, b = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "apps" / "cluster_diffports.py")],
                            cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "POLICY": policy,
                                 "PORT_A": str(a), "PORT_B": str(b)})
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True).start()
    try:
        assert wait_for(lambda: _connects(a) and _connects(b), 10)
        if policy == "none":
            assert http_get(a)[1] == "w1\n" and http_get(b)[1] == "w2\n"
        else:
            assert wait_for(lambda: len(errors) >= 2, 10), errors
            queued = _accept_queue(a)  # _connects' probes wait there too
            with socket.create_connection(("127.0.0.1", a), timeout=1) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                with pytest.raises(TimeoutError):
                    conn.recv(100)  # nobody serves it...
                assert _accept_queue(a) == queued + 1  # ...and the primary did not accept it
    finally:
        assert terminate(proc) == 0
    warnings = [line for line in errors if "nobody serves" in line]
    if policy == "none":
        assert warnings == [], errors
    else:  # one line per handle, naming it and the fix
        assert sorted(w.split()[4].rstrip(":") for w in warnings) == [f"127.0.0.1:{p}" for p in (a, b)]
        assert all("SCHED_NONE" in w and "same addresses in every worker" in w for w in warnings)
