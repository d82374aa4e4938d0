"""The .deb in a real systemd: install, deploy apps, instances, upgrade under load, purge.

Both versions are built from this checkout by scripts/build-deb.sh (the second
with --version 0.1.1, an upgrade). Debian's runtime dependencies must be
installed on the host: the box has no network and sees the host's / as its
lower layer. The README's deploy recipes run verbatim (extracted from README.md,
so they cannot drift); Flask for the venv recipe is downloaded on the host with
pip into /wheels of the box, where the recipe's `pip install` finds it offline.
Tests share one box and run in file order.
"""

from __future__ import annotations

import importlib.util
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO
from harness import Box, wait_until
from loadgen import BackgroundLoad

pytestmark = pytest.mark.system
RUNTIME_DEPS = ("python3-systemd", "python3-sdnotify", "python3-uvicorn", "python3-uvloop",
                "python3-httptools", "python3-dotenv", "python3-venv")  # venv: the Flask recipe
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
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flask and its dependencies as wheels for the box's Python, fetched on the host."""
    out = tmp_path_factory.mktemp("wheels")
    got = subprocess.run(["/usr/bin/python3", "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                          "-d", str(out), "flask"], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"cannot download Flask on the host for the venv recipe: {got.stderr[-300:]}")
    return out


@pytest.fixture(scope="module")
def box(make_box, debs, wheels) -> Box:
    box = make_box()
    box.watched = ["sockserve.socket", "sockserve.service", "sockserve@flask.service"]
    for name, deb in debs.items():
        box.install_file(deb, f"/tmp/{name}.deb")
    for wheel in wheels.iterdir():
        box.install_file(wheel, f"/wheels/{wheel.name}")
    return box


def curl(box: Box) -> subprocess.CompletedProcess:
    return box.net_run("curl", "-sS", "-m", "20", "http://127.0.0.1:8000/")


KEPT_ADMIN_FILES = ("dpkg: warning: while removing sockserve, directory '/etc/sockserve' not empty "
                    "so not removed")


def assert_no_warnings(done: subprocess.CompletedProcess, allowed: tuple[str, ...] = ()) -> None:
    """dpkg's output on a normal install/upgrade/removal: no warning from the maintainer scripts."""
    noisy = [line for line in (done.stdout + done.stderr).splitlines() if line not in allowed
             and any(w in line.lower() for w in ("warning", "not starting", "failed", "error"))]
    assert noisy == [], done.stdout + done.stderr


def test_dpkg_install_enables_socket_and_serves_without_other_steps(box):
    assert_no_warnings(box.run("dpkg", "-i", "/tmp/first.deb", timeout=120))
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
    assert box.path("/usr/share/doc/sockserve/README.md.gz").exists()


# ---------------------------------------------------------------- deploy your app (README)
ADMIN_ENV = ("env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
             # offline: pip finds Flask in /wheels (the recipe's command line is unchanged)
             "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/wheels", "PIP_CONFIG_FILE=/dev/null")
INSTANCES = {"flask": 8001, "second": 8002}  # the README's, and one made the documented way


def readme_recipe(name: str) -> str:
    """The shell block after ``<!-- recipe: NAME -->`` in README.md, verbatim."""
    after = (REPO / "README.md").read_text().split(f"<!-- recipe: {name} -->\n", 1)[1]
    assert after.startswith("```sh\n"), after[:40]
    return after[len("```sh\n"):].split("\n```\n", 1)[0] + "\n"


def run_recipe(box: Box, name: str) -> subprocess.CompletedProcess:
    return box.run(*ADMIN_ENV, "sh", "-e", "-c", readme_recipe(name), timeout=300)


def uid_of(box: Box, unit: str) -> int:
    pid = box.show(unit, "MainPID")["MainPID"]
    return int(box.run("ps", "-o", "uid=", "-p", pid).stdout)


def get(box: Box, port: int) -> str:
    answer = box.net_run("curl", "-sS", "-m", "20", f"http://127.0.0.1:{port}/")
    assert answer.returncode == 0, answer
    return answer.stdout


def test_the_package_holds_what_packaging_md_lists(debs):
    """``dpkg -c`` of the built .deb against docs/packaging.md's table: every documented file
    is there, and every unit file and conffile there is documented."""
    table = REPO / "tests/unit/test_packaging_docs.py"
    spec = importlib.util.spec_from_file_location("packaging_docs", table)
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)
    listing = subprocess.run(["dpkg-deb", "-c", str(debs["first"])], capture_output=True, text=True,
                             check=True).stdout
    files = {line.split()[5].removeprefix(".") for line in listing.splitlines() if not line.startswith("d")}
    documented = {p for p in docs.documented_paths() if p.startswith(("/lib/", "/etc/", "/usr/bin/"))}
    assert documented <= files, f"documented, not in the package: {sorted(documented - files)}"
    shipped = {f for f in files if f.startswith(("/lib/systemd/system/", "/etc/"))}
    assert shipped <= documented, f"in the package, not in docs/packaging.md: {sorted(shipped - documented)}"


def test_readme_wsgi_recipe_serves_the_app_and_writes_its_state(box):
    done = run_recipe(box, "wsgi")
    assert done.stdout.endswith("hello from /srv/myapp\n"), done
    assert get(box, 8000) == "hello from /srv/myapp\n"
    visits = box.run("cat", "/var/lib/sockserve/visits.log").stdout  # StateDirectory=, as documented
    assert visits.count("/\n") >= 2, visits
    assert box.show("sockserve.service", "DropInPaths")["DropInPaths"] == ""  # no hand-written drop-in


def test_readme_flask_recipe_serves_from_a_plain_venv_as_an_instance(box):
    done = run_recipe(box, "flask")
    assert done.stdout.endswith("hello from Flask\n"), done
    cfg = box.run("cat", "/srv/flaskapp/venv/pyvenv.cfg").stdout
    assert "include-system-site-packages = false" in cfg, cfg
    workers = box.run("pgrep", "-P", box.show("sockserve@flask.service", "MainPID")["MainPID"]).stdout.split()
    exe = box.run("cat", f"/proc/{workers[0]}/cmdline").stdout.split("\0")[0]
    assert exe == "/srv/flaskapp/venv/bin/python", exe


def add_instance(box: Box, name: str, port: int, toml: str) -> None:
    """An instance the way sockserve(8) says: NAME.toml, a socket drop-in, enable --now."""
    box.write_file(f"/etc/sockserve/{name}.toml", toml)
    box.write_file(f"/etc/systemd/system/sockserve@{name}.socket.d/listen.conf",
                   f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "enable", "--now", f"sockserve@{name}.socket")


def test_two_instances_on_two_ports_run_as_their_own_users(box):
    add_instance(box, "second", 8002, 'app = "hello_wsgi:application"\napp_dir = "/srv/myapp"\n')
    assert get(box, 8002) == "hello from /srv/myapp\n" and get(box, 8001) == "hello from Flask\n"
    units = ["sockserve.service", "sockserve@flask.service", "sockserve@second.service"]
    uids = {unit: uid_of(box, unit) for unit in units}
    assert len(set(uids.values())) == 3 and 0 not in uids.values(), uids
    assert box.run("id", "-un", str(uids["sockserve@second.service"])).stdout.strip() == "sockserve-second"
    assert box.path("/var/lib/sockserve-second").exists()
    for name in INSTANCES:  # each instance's own control socket, as root (sockserve status --instance)
        status = box.run("sockserve", "status", "--instance", name, "--json")
        assert '"state": "running"' in status.stdout, status


BROKEN_EDITS = {  # an edit of second.toml -> what the failed reload's log says
    "bind": ('bind = ["127.0.0.1:9000"]\n', "systemctl edit sockserve@second.socket"),
    "venv-under-root": ('virtualenv = "/root/venv"\n', "(ProtectHome=): move it under /srv"),
}


@pytest.mark.parametrize("edit", sorted(BROKEN_EDITS))
def test_a_broken_config_edit_fails_the_reload_and_the_port_keeps_answering(box, edit):
    box.run(*ADMIN_ENV, "python3", "-m", "venv", "--without-pip", "/root/venv")  # real, but hidden
    toml = "/etc/sockserve/second.toml"
    good = box.run("cat", toml).stdout
    pid = box.show("sockserve@second.service", "MainPID")["MainPID"]
    line, says = BROKEN_EDITS[edit]
    box.write_file(toml, good + line)
    reload = box.run("systemctl", "reload", "sockserve@second.service", check=False)
    box.write_file(toml, good)
    assert reload.returncode != 0, reload
    assert get(box, 8002) == "hello from /srv/myapp\n"
    assert box.show("sockserve@second.service", "MainPID")["MainPID"] == pid  # the same master serves
    assert says in box.journal("-u", "sockserve@second.service", "-o", "cat")


def test_bind_in_an_instance_toml_fails_the_start_with_what_to_do(box):
    toml = "/etc/sockserve/second.toml"
    good = box.run("cat", toml).stdout
    box.write_file(toml, good + 'bind = ["127.0.0.1:9000"]\n')
    restart = box.run("systemctl", "restart", "sockserve@second.service", check=False)
    box.write_file(toml, good)
    assert restart.returncode != 0
    log = box.journal("-u", "sockserve@second.service", "-o", "cat")
    assert "error: bind: under systemd the socket unit sets the address: remove bind from " \
        "/etc/sockserve/second.toml" in log and "systemctl edit sockserve@second.socket" in log, log[-2000:]
    box.run("systemctl", "reset-failed", "sockserve@second.service")
    assert get(box, 8002) == "hello from /srv/myapp\n"  # the socket stayed open: the next start serves


def test_readme_recovery_reopens_a_port_closed_by_the_start_limit(box):
    app = "/srv/myapp/hello_wsgi.py"
    good = box.run("cat", app).stdout
    box.write_file(app, "raise RuntimeError('broken by an upgrade')\n" + good)
    box.run("systemctl", "restart", "sockserve.service", check=False)  # exit 6: not restarted
    box.net_run("curl", "-sS", "-m", "20", "http://127.0.0.1:8000/")  # queued: re-triggers until the limit
    wait_until(lambda: box.show("sockserve.socket", "Result")["Result"] == "service-start-limit-hit", 30,
               "the socket to fail on the service's start limit")
    assert curl(box).returncode == 7  # the port is closed
    box.write_file(app, good)  # the cause fixed, then the README's recovery, verbatim
    run_recipe(box, "reopen")
    assert get(box, 8000) == "hello from /srv/myapp\n"


# ---------------------------------------------------------------- upgrade and purge
def test_upgrade_under_load_restarts_every_instance_and_refuses_nothing(box):
    units = {8000: "sockserve.service", **{p: f"sockserve@{n}.service" for n, p in INSTANCES.items()}}
    for port in units:
        get(box, port)  # every service running
    old = {unit: box.show(unit, "MainPID")["MainPID"] for unit in units.values()}
    socket_since = box.show("sockserve.socket", "ActiveEnterTimestampMonotonic")
    loads = {port: BackgroundLoad(box, port=port, count=1500, seconds=60, concurrency=2, expect="hello from")
             for port in units}
    time.sleep(0.5)
    done = box.run("dpkg", "-i", "/tmp/upgrade.deb", timeout=180)
    time.sleep(0.5)
    for port, load in loads.items():
        summary = load.finish()
        assert summary["ok"] > 0 and summary["refused"] == 0, (port, summary)
        assert (summary["bad_status"], summary["errors"]) == (0, {}), (port, summary)
    assert_no_warnings(done)
    assert box.run("dpkg-query", "-W", "-f=${Version}", "sockserve").stdout == UPGRADE_VERSION
    assert box.show("sockserve.socket", "ActiveEnterTimestampMonotonic") == socket_since  # never stopped
    new = {unit: box.show(unit, "MainPID")["MainPID"] for unit in units.values()}
    assert all(new[u] not in ("0", old[u]) for u in units.values()), (old, new)


def test_purge_leaves_no_unit_link_runtime_directory_or_process(box):
    # dpkg's own note that it keeps /etc/sockserve for the administrator's NAME.toml files
    assert_no_warnings(box.run("dpkg", "--purge", "sockserve", timeout=120), (KEPT_ADMIN_FILES,))
    assert curl(box).returncode == 7  # connection refused
    for port in INSTANCES.values():
        assert box.net_run("curl", "-sS", "-m", "5", f"http://127.0.0.1:{port}/").returncode == 7
    for gone in ("/lib/systemd/system/sockserve.socket", "/lib/systemd/system/sockserve@.service",
                 "/etc/sockserve/sockserve.toml", "/etc/systemd/system/sockets.target.wants/sockserve.socket",
                 "/etc/systemd/system/sockets.target.wants/sockserve@flask.socket",
                 "/etc/systemd/system/sockets.target.wants/sockserve@second.socket",
                 "/run/sockserve", "/run/sockserve-flask", "/run/sockserve-second"):
        assert not box.path(gone).exists(), gone
    assert box.show("sockserve.socket", "LoadState")["LoadState"] == "not-found"
    loaded = box.run("systemctl", "list-units", "--all", "--plain", "--no-legend", "sockserve*").stdout
    assert loaded.strip() == "", loaded
    assert box.run("pgrep", "-f", "sockserve", check=False).stdout == ""  # look only: nothing to end
    assert box.path("/etc/sockserve/flask.toml").exists()  # the administrator's files are kept
