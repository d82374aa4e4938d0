"""The seed programs ported to sockserve.cluster (examples/cluster_*.py) show what the Node
originals show.  They listen on port 8000 as the originals do, each run in a private network
namespace (``unshare -rn``, netns_examples.py) so no other port 8000 is in the way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, program_env

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("ip"),
                                 reason="needs unshare and ip for a private network namespace")]


def in_netns(scenario: str) -> dict:
    out = subprocess.run(["unshare", "-rn", sys.executable, str(ROOT / "tests" / "integration" /
                          "netns_examples.py"), scenario], capture_output=True, text=True, timeout=50,
                         env=program_env())
    if out.returncode != 0 and "unshare" in out.stderr and "Operation not permitted" in out.stderr:
        pytest.skip("no user namespaces here")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_request_counter_counts_exactly_the_requests_made():
    seen = in_netns("counter")
    assert seen["bodies"] == ["hello world\n"] * seen["made"]
    counts = [int(line.split("= ")[1]) for line in seen["lines"] if line.startswith("numReqs = ")]
    assert counts and counts[-1] == seen["made"] and max(counts) == seen["made"], seen["lines"]
    assert len(counts) >= 2  # every second, as setInterval(..., 1000)
    assert seen["rc"] == 0  # SIGTERM: cluster.disconnect(), then exit 0


def test_hello_world_from_every_worker_and_each_death_logged_from_exit():
    seen = in_netns("hello")
    cpus = os.cpu_count()
    assert seen["started"], seen["lines"]
    primary = [line for line in seen["lines"] if line.startswith("Primary ")]
    assert len(primary) == 1 and len(seen["workers"]) == cpus
    assert seen["bodies"] == ["hello world\n"] * cpus
    # rr: one connection to each worker: the server side of each is held by a different worker
    holders = [set(pids) & set(seen["workers"]) for pids in seen["servers"]]
    assert all(len(h) == 1 for h in holders) and set().union(*holders) == set(seen["workers"]), seen
    # the worker killed first is logged by the primary's exit listener, the others still answer
    assert f"worker {seen['victim']} died" in seen["lines"]
    assert seen["after"] == "hello world\n"
    # the stop: every other worker's death logged too, and nothing else printed by sockserve
    for pid in seen["workers"]:
        assert seen["lines"].count(f"worker {pid} died") == 1
    assert len(seen["lines"]) == 1 + 2 * cpus, seen["lines"]
    assert seen["rc"] == 0
