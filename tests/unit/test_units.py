"""The unit files: required settings, systemd-analyze verify and security.

systemd-analyze checks that ExecStart= binaries exist, so it runs with
``--root`` on a temporary tree holding this host's systemd units, our units in
/etc/systemd/system and the real ``sockserve`` console script of this
environment as /usr/bin/sockserve. A test removes that script to show the
check is live.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sockserve.config import EXIT_APP, EXIT_USAGE, Config

UNITS = Path(__file__).resolve().parents[2] / "units"
ANALYZE = shutil.which("systemd-analyze")
HOST_UNITS = Path("/usr/lib/systemd/system")
SERVICES = ("sockserve.service", "sockserve@demo.service")
ALL_UNITS = ("sockserve.socket", "sockserve@demo.socket", "sockserve-agent.socket", *SERVICES)
HARDENING_MARK = "# --- privileges and sandboxing"

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def settings(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in ``units/name``, in order."""
    section, found = "", []
    for line in (UNITS / name).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.append((section, key.strip(), value.strip()))
    return found


def value(name: str, key: str) -> str:
    values = [v for _, k, v in settings(name) if k == key]
    assert values, f"{name}: {key}= is missing"
    return values[-1]


@pytest.mark.parametrize("name", ["sockserve.service", "sockserve@.service"])
def test_service_settings_match_the_master(name):
    assert value(name, "Type") == "notify" and value(name, "NotifyAccess") == "main"
    assert value(name, "ExecReload") == "/usr/bin/sockserve reload --wait"
    assert value(name, "KillMode") == "mixed" and value(name, "KillSignal") == "SIGTERM"
    assert float(value(name, "TimeoutStopSec")) > Config().drain_kill_after()
    assert value(name, "Restart") == "on-failure"
    assert set(value(name, "RestartPreventExitStatus").split()) == {str(EXIT_USAGE), str(EXIT_APP)}
    assert float(value(name, "WatchdogSec")) > 0
    assert value(name, "DynamicUser") == "yes"
    assert value(name, "RuntimeDirectory").startswith("sockserve")


def test_exec_start_reads_the_config_of_the_instance():
    expected = "/usr/bin/sockserve --config /etc/sockserve/sockserve.toml"
    assert value("sockserve.service", "ExecStart") == expected
    assert value("sockserve@.service", "ExecStart") == "/usr/bin/sockserve --config /etc/sockserve/%i.toml"


def test_socket_settings():
    assert value("sockserve.socket", "ListenStream") == "127.0.0.1:8000"
    for name in ("sockserve.socket", "sockserve@.socket"):
        assert value(name, "FileDescriptorName") == "http" and value(name, "Backlog") == "511"
        assert value(name, "Accept") == "no"


@pytest.mark.parametrize("name", ["sockserve.service", "sockserve@.service"])
def test_every_hardening_option_has_its_own_comment(name):
    lines = (UNITS / name).read_text().splitlines()
    start, end = lines.index(next(x for x in lines if x.startswith(HARDENING_MARK))), len(lines)
    options = [i for i in range(start + 1, end) if lines[i] and not lines[i].startswith("#")]
    assert len(options) >= 20
    uncommented = [lines[i] for i in options if not lines[i - 1].startswith("# ")]
    assert uncommented == []


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A file system root for systemd-analyze: host units, our units, /usr/bin/sockserve."""
    if ANALYZE is None:
        pytest.skip("systemd-analyze is not installed")
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS.glob("sockserve*"):
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    script = Path(sys.executable).with_name("sockserve")
    assert script.exists(), f"{script} is missing: install sockserve in this environment (pip install -e .)"
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(script, root / "usr/bin/sockserve")
    return root


def analyze(root, *args):
    return subprocess.run([ANALYZE, f"--root={root}", *args], capture_output=True, text=True, timeout=60)


@needs_analyze
def test_systemd_analyze_verify_is_clean(root):
    # --man=no: Documentation=man:sockserve(8) exists once the .deb is installed (tests/system)
    done = analyze(root, "verify", "--man=no", *ALL_UNITS)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


@needs_analyze
def test_verify_would_report_a_missing_executable(root):
    binary = root / "usr/bin/sockserve"
    binary.rename(root / "sockserve.away")
    try:
        done = analyze(root, "verify", "--man=no", "sockserve.service")
    finally:
        (root / "sockserve.away").rename(binary)
    assert "Command /usr/bin/sockserve is not executable" in done.stderr


@needs_analyze
@pytest.mark.parametrize("service", SERVICES)
def test_security_exposure_is_at_most_2(root, service):
    done = analyze(root, "security", "--offline=true", "--threshold=20", service)
    match = re.search(rf"Overall exposure level for {re.escape(service)}: (\d+\.\d+)", done.stdout)
    assert match, done.stdout[-500:] + done.stderr
    assert float(match.group(1)) <= 2.0
    assert done.returncode == 0, done.stderr
