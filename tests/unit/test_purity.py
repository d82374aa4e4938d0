"""Pure modules stay free of I/O: no os, socket, signal or time imports."""

import ast
import pathlib

import pytest

PURE = ["protocol", "peer", "config", "round_robin", "shared", "backoff", "events", "deadlines"]
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
    long = {p.name: n for p in ROOT.glob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert not long
