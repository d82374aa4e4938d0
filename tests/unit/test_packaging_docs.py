"""docs/packaging.md's "What the package contains" table lists every file
debian/sockserve.install puts in the package (tests/system/test_deb.py checks the built
.deb's own listing against the same table)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def expand(pattern: str) -> list[str]:
    """Shell brace expansion of ``{a,b}`` groups: ``sockserve{,@}.socket`` -> two names."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def documented_paths() -> set[str]:
    """Every path named in the first column of the table (braces expanded)."""
    text = (ROOT / "docs/packaging.md").read_text()
    table = text.split("## What the package contains", 1)[1].split("\n\n", 2)[1]
    paths: set[str] = set()
    for row in table.splitlines()[2:]:
        for literal in re.findall(r"`([^`]+)`", row.split("|")[1]):
            paths.update(expand(literal))
    return paths


def installed_paths() -> set[str]:
    """What debian/sockserve.install puts in the package: /DEST/BASENAME."""
    paths = set()
    for line in (ROOT / "packaging/debian/sockserve.install").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            source, dest = line.split()
            paths.add(f"/{dest.strip('/')}/{Path(source).name}")
    return paths


def test_the_table_lists_every_installed_file():
    missing = installed_paths() - documented_paths()
    assert not missing, f"docs/packaging.md does not list {sorted(missing)}"


def test_expand_reads_braces_as_the_shell_does():
    assert expand("/a/s{,@}.{socket,service}") == ["/a/s.socket", "/a/s.service", "/a/s@.socket",
                                                   "/a/s@.service"]
