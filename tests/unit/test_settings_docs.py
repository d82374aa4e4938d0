"""--help, the man page, the packaged TOML file and docs/options.md name the same options.

The parser is generated from settings.SETTINGS; these checks keep the hand-written
documents from drifting (the man page once documented ``--workers 0`` and an ignored
``--bind`` under systemd; both exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sockserve.cli import serve_parser
from sockserve.ctl import _parser as ctl_parser
from sockserve.master.control import default_control_path
from sockserve.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
MAN = (ROOT / "packaging/debian/sockserve.8").read_text()
TOML = (ROOT / "packaging/debian/sockserve.toml").read_text()
OPTIONS_MD = (ROOT / "docs/options.md").read_text()


def parser_flags() -> set[str]:
    return {flag for action in serve_parser()._actions for flag in action.option_strings
            if flag.startswith("--")}


def man_flags(section: str, until: str) -> set[str]:
    text = MAN[MAN.index(section):MAN.index(until)].replace("\\-", "-")
    return {m.rstrip("-") for m in re.findall(r"--[a-z][a-z-]*", text)} - {"--no"}  # "--no-X" in prose


def test_man_page_options_are_the_parsers():
    assert man_flags(".SH OPTIONS", ".SH COMMANDS") == parser_flags()


def test_man_page_commands_list_the_control_flags():
    ctl = {flag for sub in ctl_parser()._subparsers._group_actions[0].choices.values()
           for action in sub._actions for flag in action.option_strings if flag.startswith("--")}
    from sockserve.check import check_parser

    check = {flag for action in check_parser()._actions for flag in action.option_strings
             if flag.startswith("--")} - parser_flags()  # sockserve check: the serve options, and
    assert man_flags(".SH COMMANDS", ".SH SIGNALS") == (ctl | check) - {"--help"}


def test_man_page_no_longer_promises_what_exits_2():
    assert "0 means one per CPU" not in MAN and "Ignored when systemd passes sockets" not in MAN


def test_packaged_toml_lists_every_key_commented_out():
    keys = set(re.findall(r"^# ([a-z_]+) = ", TOML, re.MULTILINE))
    assert keys == {s.name for s in SETTINGS}
    assert not re.findall(r"^[a-z_]+ = ", TOML, re.MULTILINE)  # all defaults: nothing set


def test_options_page_names_every_option():
    assert {flag for flag in parser_flags() if not flag.startswith("--no-")} - {"--help", "--version"} \
        <= set(re.findall(r"--[a-z][a-z-]*", OPTIONS_MD))


def test_every_yes_row_of_the_options_page_names_an_existing_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    rows = [line for line in OPTIONS_MD.splitlines() if line.startswith("|") and "| yes |" in line]
    assert len(rows) > 30
    for row in rows:
        names = re.findall(r"`(test_[a-z0-9_]+)`", row.split("| yes |")[1])
        assert names, row
        for name in names:
            assert f"def {name}(" in tests, f"{name} (options.md) is not a test"


@pytest.mark.parametrize("environ, uid, instance, expected", [
    ({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, 0, None, "/run/a/control.sock"),
    ({}, 0, None, "/run/sockserve/control.sock"),
    ({}, 0, "web", "/run/sockserve-web/control.sock"),
    ({"RUNTIME_DIRECTORY": "/run/sockserve"}, 0, "web", "/run/sockserve-web/control.sock"),
    ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, None, "/run/user/1000/sockserve/control.sock"),
    ({}, 1000, None, None),
    ({"XDG_RUNTIME_DIR": "relative"}, 1000, None, None),
])
def test_default_control_path(environ, uid, instance, expected):
    assert default_control_path(environ, instance, uid=uid) == expected


def test_units_runtime_directories_match_the_default_paths():
    units = ROOT / "units"
    assert "RuntimeDirectory=sockserve\n" in (units / "sockserve.service").read_text()
    assert "RuntimeDirectory=sockserve-%i\n" in (units / "sockserve@.service").read_text()
