"""Per-listener apps (issue 15, part 4): which app serves which listener, by the listener's name.

A listener's *name* is systemd's ``FileDescriptorName=`` (``LISTEN_FDNAMES``) for a socket
systemd passed, or the NAME of ``--bind NAME=ADDR`` for one sockserve binds ("" when unnamed).
The ``app`` setting is either one ``MODULE:ATTR`` for every listener (as before), or a mapping
name -> ``MODULE:ATTR``:

- TOML: ``app = { http = "main:app", admin = "admin:app" }``
- command line: ``--app http=main:app --app admin=admin:app`` (a plain ``--app MODULE:ATTR``, or
  the positional APP, is the default: every listener the mapping does not name)
- environment: ``SOCKSERVE_APP="http=main:app,admin=admin:app"``

In a mapping the name ``*`` is the default.  Normal form (``parse``): ``None`` (the built-in
app), a ``str`` (one app for every listener), or a sorted tuple of ``(name, spec)`` pairs.
Pure: no I/O.  Errors are ``ConfigError`` with the one-line message (exit 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

DEFAULT = "*"  # the mapping's entry for listeners it does not name
NAME_MAX = 255  # systemd's limit for FileDescriptorName=

AppSetting = str | None | tuple[tuple[str, str], ...]


def is_import_spec(spec: str) -> bool:
    """``module.sub:attr.sub``: dotted identifiers on both sides of one ':'."""
    module, sep, attr = spec.partition(":")
    parts = module.split(".") + attr.split(".")
    return bool(sep) and all(p.isidentifier() for p in parts)


def valid_name(name: str) -> bool:
    """A listener name as systemd allows it for FileDescriptorName=: 1..255 printable
    characters, no ':' (LISTEN_FDNAMES' separator), no '=' and no whitespace."""
    return 0 < len(name) <= NAME_MAX and name.isprintable() and not (set(name) & set(":= \t,"))


def split_bind(entry: str) -> tuple[str, str]:
    """``(name, address)`` of a ``bind`` entry: ``NAME=ADDR`` or ``ADDR`` (name "").
    Addresses never contain '='."""
    name, sep, address = entry.partition("=")
    return (name.strip(), address.strip()) if sep else ("", entry.strip())


def parse(value: Any) -> AppSetting:
    """The normal form of an ``app`` value from the command line (a list), the environment
    (``str``) or the TOML file (``str`` or table); ConfigError naming what is wrong."""
    if value is None:
        return None
    entries: list[tuple[str, str]] = []
    if isinstance(value, Mapping):  # a TOML table: messages show its keys as written
        if not value:
            raise ConfigError("app = {}: an empty table names no listener; give "
                              "{ NAME = \"MODULE:ATTR\", ... }, or one \"MODULE:ATTR\"")
        for name, spec in value.items():
            if not isinstance(spec, str):
                raise ConfigError(f"{toml_key(str(name))} = {spec!r}: expected \"MODULE:ATTR\"")
            entries.append((str(name), spec.strip()))
        return _normal(entries, toml=True)
    else:
        items = [value] if isinstance(value, str) else list(value)
        for item in items:
            if isinstance(item, (tuple, list)) and len(item) == 2:  # the normal form again
                entries.append((str(item[0]), str(item[1])))
                continue
            if not str(item).replace(",", "").strip():  # leaving app out is the built-in app
                raise ConfigError(f"app: {item!r} is empty: give MODULE:ATTR (or leave app out "
                                  "for the built-in app)")
            for part in str(item).split(","):
                if part.strip():
                    name, spec = split_bind(part)
                    if "=" in part and not name:  # "=main:app": as --bind refuses "=ADDR"
                        raise ConfigError(f"app: {part.strip()!r}: '' is not a listener name "
                                          "(NAME=MODULE:ATTR, or MODULE:ATTR for every listener)")
                    entries.append((name or DEFAULT, spec))
    return _normal(entries)


def toml_key(name: str) -> str:
    """``app.NAME`` as the TOML file writes the key (quoted when not a bare key)."""
    bare = name and all(c.isalnum() or c in "_-" for c in name) and name.isascii()
    return f"app.{name}" if bare else "app." + json.dumps(name)


def _normal(entries: list[tuple[str, str]], toml: bool = False) -> AppSetting:
    seen: dict[str, str] = {}
    for name, spec in entries:
        key = toml_key(name) if toml else "app"
        if name != DEFAULT and not valid_name(name):
            raise ConfigError(f"{key}: {name!r} is not a listener name (1-255 characters, no ':', "
                             "'=', ',' or spaces)")
        if not is_import_spec(spec):
            shown = json.dumps(spec) if toml else repr(spec if name == DEFAULT else f"{name}={spec}")
            raise ConfigError(f"{key}: {shown} is not MODULE:ATTRIBUTE")
        if name in seen:
            which = "the default app is given twice" if name == DEFAULT else \
                f"listener {name!r} is given two apps"
            raise ConfigError(f"app: {which} ({seen[name]}, {spec})")
        seen[name] = spec
    if not seen:
        return None
    if set(seen) == {DEFAULT}:
        return seen[DEFAULT]
    return tuple(sorted(seen.items()))


def default(app: AppSetting) -> str | None:
    """The app of listeners the mapping does not name (None: none given)."""
    if app is None or isinstance(app, str):
        return app
    return dict(app).get(DEFAULT)


def named(app: AppSetting) -> dict[str, str]:
    """name -> spec of the mapping's named entries ({} for one app everywhere)."""
    if app is None or isinstance(app, str):
        return {}
    return {name: spec for name, spec in app if name != DEFAULT}


def shown(app: AppSetting) -> str:
    """``main:app`` or ``http=main:app,admin=admin:app`` (the environment's form)."""
    if app is None or isinstance(app, str):
        return str(app)
    return ",".join(spec if name == DEFAULT else f"{name}={spec}" for name, spec in app)


# Where the names come from, for the message of a name no listener has (``resolve``'s source).
SOURCES = ("bind", "bind_file", "unbound", "LISTEN_FDNAMES", "reload", "master", "units", "fdnames")


def resolve(app: AppSetting, listeners: Mapping[str, str], source: str = "bind",
            in_file: bool = False) -> dict[str, str | None]:
    """key -> the spec serving it (None: the built-in app), for ``listeners`` (key -> name,
    "" unnamed).  ConfigError when the mapping names a listener that does not exist, or a
    listener has no app and the mapping no default.  ``source`` (one of SOURCES) says where
    the names come from, for the message; ``in_file``: the mapping is the TOML file's (the
    message writes its key ``app.NAME``)."""
    names = named(app)
    if not names:
        return {key: default(app) for key in listeners}
    present = {name for name in listeners.values() if name}
    missing = sorted(set(names) - present)
    if missing:
        name = missing[0]
        key = toml_key(name) if in_file else "app"
        raise ConfigError(f"{key}: no listener is named {name!r} ({_where(present, source, name)})")
    fallback = default(app)
    resolved: dict[str, str | None] = {}
    for key, name in listeners.items():
        spec = names.get(name, fallback) if name else fallback
        if spec is None:
            label = f"{key} (unnamed)" if not name else (repr(name) if key == name else f"{name!r} ({key})")
            add = '"*" = "MODULE:ATTR" in the app table' if in_file else "--app MODULE:ATTR"
            raise ConfigError(f"app: listener {label} has no app: the mapping names "
                             f"{', '.join(sorted(names))}; name it too, or add a default app ({add})")
        resolved[key] = spec
    return resolved


def _where(present: set[str], source: str, name: str) -> str:
    have = ", ".join(sorted(present)) or "none"
    if source == "LISTEN_FDNAMES":
        return (f"LISTEN_FDNAMES has {have}; set FileDescriptorName={name} on a socket unit "
                "of the service")
    if source == "reload":  # systemd passes sockets at a start only
        return (f"this master was started with the sockets {have}; the service must be restarted "
                f"to receive another: systemctl stop it, start the socket unit with "
                f"FileDescriptorName={name}, then start it (a reload cannot add a socket)")
    if source == "master":
        return (f"the running master's sockets are {have}; a new socket (FileDescriptorName={name}) "
                "takes a restart of the service, not a reload")
    if source == "units":  # sockserve check with the service stopped: systemctl show
        return (f"the socket units of the service name their sockets {have}; set "
                f"FileDescriptorName={name} on one")
    if source == "fdnames":
        return f"--fdnames has {have}"
    if source == "unbound":  # a config for systemd's sockets, checked without them
        return ("bind is not set, so the names are those of the sockets systemd passes; "
                "check with: sockserve check --socket-activated")
    if source == "bind_file":
        return f'bind names: {have}; name one in the file: bind = ["{name}=HOST:PORT"]'
    return f"bind names: {have}; name one with --bind {name}=HOST:PORT"


def listener_keys(listeners: list[tuple[str, str]]) -> list[str]:
    """The key of each ``(name, address)``: the name when no other listener has it, else the
    address (names never contain ':', addresses always do).  The one rule for systemd's
    sockets (listenfds.py) and sockserve's own (listeners.py)."""
    counts: dict[str, int] = {}
    for name, _ in listeners:
        counts[name] = counts.get(name, 0) + 1
    return [name if name and counts[name] == 1 else address for name, address in listeners]


def bind_names(bind: tuple[str, ...]) -> dict[str, str]:
    """address text -> name for the ``bind`` entries (``NAME=ADDR``; "" unnamed); ConfigError
    for a bad name, or a name given twice (its key would be ambiguous)."""
    names: dict[str, str] = {}
    for entry in bind:
        name, address = split_bind(entry)
        if "=" in entry and not valid_name(name):
            raise ConfigError(f"bind: {entry!r}: {name!r} is not a listener name (1-255 characters, "
                             "no ':', '=', ',' or spaces)")
        if name and name in names.values():
            raise ConfigError(f"bind: the name {name!r} is given twice ({', '.join(bind)})")
        names[address] = name
    return names
