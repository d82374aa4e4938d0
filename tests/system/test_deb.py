"""The .deb in a real systemd: install, serve, upgrade under load, purge.

Both versions are built from this checkout by scripts/build-deb.sh (the second
with --version 0.1.1, an upgrade). Debian's runtime dependencies must be
installed on the host: the box has no network and sees the host's / as its
lower layer. Tests share one box and run in file order.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO
from harness import Box, wait_until
from loadgen import BackgroundLoad

pytestmark = pytest.mark.system
RUNTIME_DEPS = ("python3-systemd", "python3-sdnotify", "python3-uvicorn", "python3-uvloop",
                "python3-httptools")
UPGRADE_VERSION = "0.1.1-1"


def missing_runtime_deps() -> list[str]:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *RUNTIME_DEPS],
                            capture_output=True, text=True).stdout
    installed = {line.split()[0] for line in status.splitlines() if line.endswith("install ok installed")}
    return [p for p in RUNTIME_DEPS if p not in installed]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"first": 0.1.0-1 .deb, "upgrade": 0.1.1-1 .deb}, built in parallel."""
    if not (REPO / "units/sockserve.socket").exists():
        pytest.skip("units/sockserve.socket is not written yet")
    if missing := missing_runtime_deps():
        pytest.skip(f"the box needs the runtime deps on the host: apt-get install {' '.join(missing)}")
    out = tmp_path_factory.mktemp("debs")
    builds = {name: subprocess.Popen([str(REPO / "scripts/build-deb.sh"), "--out", str(out / name), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for name, extra in (("first", ["--lintian"]), ("upgrade", ["--version", UPGRADE_VERSION]))}
    paths = {}
    for name, proc in builds.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"build-deb.sh ({name}) failed:\n{stderr}"
        paths[name] = Path(stdout.split()[-1])
    return paths


@pytest.fixture(scope="module")
def box(make_box, debs) -> Box:
    box = make_box()
    box.watched = ["sockserve.socket", "sockserve.service"]
    for name, deb in debs.items():
        box.install_file(deb, f"/tmp/{name}.deb")
    return box


def curl(box: Box) -> subprocess.CompletedProcess:
    return box.net_run("curl", "-sS", "-m", "20", "http://127.0.0.1:8000/")


def test_dpkg_install_enables_socket_and_serves_without_other_steps(box):
    box.run("dpkg", "-i", "/tmp/first.deb", timeout=120)
    answer = curl(box)
    assert answer.returncode == 0 and answer.stdout.startswith("hello world from worker"), answer
    assert box.run("systemctl", "is-enabled", "sockserve.socket").stdout.strip() == "enabled"
    wait_until(lambda: box.show("sockserve.service", "ActiveState")["ActiveState"] == "active", 20, "READY=1")
    assert "Started sockserve.service" in box.journal("-u", "sockserve", "-o", "cat")
    conffiles = box.run("dpkg-query", "-W", "-f=${Conffiles}", "sockserve").stdout
    assert "/etc/sockserve/sockserve.toml" in conffiles
    listed = box.run("systemctl", "list-unit-files", "--no-legend", "sockserve@*").stdout.splitlines()
    states = dict(line.split()[:2] for line in listed)
    assert set(states) == {"sockserve@.socket", "sockserve@.service"}, listed
    assert "enabled" not in states.values(), listed  # templates installed, never enabled
    verify = box.run("systemd-analyze", "verify", "sockserve.socket", "sockserve.service",
                     "sockserve@.socket", "sockserve@.service", check=False)  # man page installed now
    assert (verify.returncode, verify.stderr, verify.stdout) == (0, "", ""), verify


def test_upgrade_under_load_refuses_nothing_and_restarts_service(box):
    old_service = box.show("sockserve.service", "MainPID")["MainPID"]
    socket_since = box.show("sockserve.socket", "ActiveEnterTimestampMonotonic")
    load = BackgroundLoad(box, count=3000, seconds=60)
    time.sleep(0.5)
    box.run("dpkg", "-i", "/tmp/upgrade.deb", timeout=120)
    time.sleep(0.5)
    summary = load.finish()
    assert summary["ok"] > 0 and summary["refused"] == 0, summary
    assert (summary["bad_status"], summary["errors"]) == (0, {}), summary
    assert box.run("dpkg-query", "-W", "-f=${Version}", "sockserve").stdout == UPGRADE_VERSION
    assert box.show("sockserve.socket", "ActiveEnterTimestampMonotonic") == socket_since  # never stopped
    assert box.show("sockserve.service", "MainPID")["MainPID"] not in ("0", old_service)


def test_purge_closes_port_and_removes_units_and_config(box):
    box.run("dpkg", "--purge", "sockserve", timeout=120)
    assert curl(box).returncode == 7  # connection refused
    for gone in ("/lib/systemd/system/sockserve.socket", "/lib/systemd/system/sockserve@.service",
                 "/etc/sockserve", "/etc/systemd/system/sockets.target.wants/sockserve.socket"):
        assert not box.path(gone).exists(), gone
    assert box.show("sockserve.socket", "LoadState")["LoadState"] == "not-found"
