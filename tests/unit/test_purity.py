"""Pure modules stay free of I/O: no os, socket, signal or time imports."""

import ast
import pathlib

import pytest

PURE = ["cluster/protocol", "cluster/peer", "config", "settings", "access", "master/round_robin",
        "master/shared", "master/backoff", "master/events", "master/lifecycle",
        "master/generations", "master/supervisor", "master/supervisor_stop",
        "master/supervisor_workers", "master/policy_switch", "master/supervisor_recycle",
        "recycling", "master/idle", "appmap", "address", "errors", "master/agentcheck",
        "worker/proxyproto", "worker/proxypolicy",  # PROXY protocol header and trust (issue 16)
        "sockets",  # issue 16: what a start refuses given its sockets (start, reload, check)
        "cluster/handles", "cluster/events"]  # issue 15: Node's handles map, events and their order
FORBIDDEN = {"os", "socket", "signal", "time", "asyncio", "subprocess", "select"}
ROOT = pathlib.Path(__file__).resolve().parents[2] / "sockserve"


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports_no_io(name):
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{name}.py imports {imported & FORBIDDEN}"


def test_no_module_is_over_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long


# The role packages: what runs where.  A worker (and the CLI's control client) must not
# pull the master in; the wire (cluster/) depends on neither side.
ROLES = {"cluster": {"master", "worker", "systemd"}, "worker": {"master"}}


@pytest.mark.parametrize("package", sorted(ROLES))
def test_role_packages_do_not_import_across(package):
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                top = node.module.split(".")[0]
                assert top not in ROLES[package], f"{path.relative_to(ROOT)} imports ..{node.module}"


def test_worker_process_imports_no_master_module():
    import subprocess
    import sys

    code = ("import sys, sockserve, sockserve.worker.main, sockserve.worker.runtime; "
            "print(sorted(m for m in sys.modules if m.startswith('sockserve.master')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_contracts_module_map_names_every_module():
    """docs/contracts.md's module map matches the tree (issue 17)."""
    text = (ROOT.parent / "docs" / "contracts.md").read_text()
    files = [p for p in ROOT.rglob("*") if p.suffix in (".py", ".c", ".h") and "__pycache__" not in p.parts]
    skip = ("__init__.py", "__main__.py", "native.h", "rr_core.h")
    missing = [str(p.relative_to(ROOT)) for p in files if p.name not in skip and p.name not in text]
    assert not missing, f"not in docs/contracts.md's module map: {missing}"
