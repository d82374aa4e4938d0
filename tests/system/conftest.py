"""Fixtures for system tests: one booted systemd (sdbox) per test module.

Boxes live under a state dir of this pytest process (``/run/sockserve-sdbox-runs/PID``),
cleared at session end; at session start only the dirs of pytest processes that are
gone are cleared, so concurrent runs on one machine never tear down each other's
boxes. A failing test prints the status and journal of the
units its module registered (``box.watch``) before the box goes away.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import STATE_DIR_ENV, Box, cannot_boot_reason

REPO = Path(__file__).resolve().parents[2]
SRC_IN_BOX = "/opt/sockserve-src"
STATE_ROOT = Path("/run/sockserve-sdbox-runs")
WRAPPER = f"""#!/bin/sh
# test wrapper: run sockserve from the read-only bind of the source tree with Debian's python3
export PYTHONPATH={SRC_IN_BOX} PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m sockserve "$@"
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = cannot_boot_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("system"):
            item.add_marker(pytest.mark.skip(reason=reason))


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def sdbox_session() -> Iterator[None]:
    """A state dir for this run's boxes; leftovers of dead runs removed before, ours after."""
    reason = cannot_boot_reason()
    if reason:
        pytest.skip(reason)
    for stale in STATE_ROOT.glob("*"):
        if stale.is_dir() and not _pid_alive(stale.name):
            _down_all_in(stale)
    ours = STATE_ROOT / str(os.getpid())
    os.environ[STATE_DIR_ENV] = str(ours)
    Box.down_all()
    yield
    _down_all_in(ours)


def _pid_alive(name: str) -> bool:
    return name.isdigit() and Path(f"/proc/{name}").exists()


def _down_all_in(state_dir: Path) -> None:
    saved = os.environ.get(STATE_DIR_ENV)
    os.environ[STATE_DIR_ENV] = str(state_dir)
    try:
        Box.down_all()
    finally:
        if saved is not None:
            os.environ[STATE_DIR_ENV] = saved
    with contextlib.suppress(OSError):
        state_dir.rmdir()


@pytest.fixture(scope="module")
def make_box(request: pytest.FixtureRequest, sdbox_session: None) -> Iterator[Callable[..., Box]]:
    """Factory: ``make_box(*sdbox_up_args)`` boots this module's box (torn down after the module)."""
    boxes: list[Box] = []

    def make(*args: str) -> Box:
        name = f"{request.module.__name__.rpartition('.')[2]}-{os.getpid()}-{len(boxes)}"
        box = Box.up(name.replace("_", "-"), *args)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.down()


@pytest.fixture(autouse=True)
def dump_journal_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test, print status + journal of the box units the module watches."""
    yield
    if not request.node.stash.get(FAILED, False) or "make_box" not in request.fixturenames:
        return
    box = request.node.funcargs.get("box")
    if isinstance(box, Box):
        print(f"==== box {box.name}: diagnostics ====")
        print(box.diagnostics(*getattr(box, "watched", [])))


def install_source_tree(box: Box) -> None:
    """Units from units/, default config, and /usr/bin/sockserve running the ro-bound source tree."""
    for unit in sorted((REPO / "units").glob("sockserve*.s*")):
        box.install_file(unit, f"/etc/systemd/system/{unit.name}")
    box.install_file(REPO / "packaging/debian/sockserve.toml", "/etc/sockserve/sockserve.toml")
    box.write_file("/usr/bin/sockserve", WRAPPER, mode=0o755)
    box.run("systemctl", "daemon-reload")


@pytest.fixture(scope="module")
def source_box(make_box: Callable[..., Box]) -> Box:
    """A box with sockserve's units installed and the repository bound read-only (pitfall 10)."""
    if not (REPO / "units/sockserve.socket").exists():
        pytest.skip("units/sockserve.socket is not written yet")
    box = make_box("--ro-bind", f"{REPO}:{SRC_IN_BOX}")
    box.watched = ["sockserve.socket", "sockserve.service"]
    install_source_tree(box)
    return box
