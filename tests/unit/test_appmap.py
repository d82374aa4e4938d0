"""appmap.py: the forms of ``app`` (one app, or listener name -> app) and which app serves
which listener; ``bind NAME=ADDR``; what a worker is told."""

from __future__ import annotations

import pytest

from sockserve import appmap
from sockserve.config import ConfigError, make_config

A, B, C = "main:app", "admin:app", "other.mod:make"


@pytest.mark.parametrize("value, normal", [
    (None, None),
    (A, A),  # one app everywhere, as before
    ([A], A),  # the positional APP / a plain --app
    ([f"*={A}"], A),
    ({"*": A}, A),
    ([f"http={A}", f"admin={B}"], (("admin", B), ("http", A))),  # repeated --app NAME=...
    (f"http={A},admin={B}", (("admin", B), ("http", A))),  # SOCKSERVE_APP
    ({"http": A, "admin": B}, (("admin", B), ("http", A))),  # the TOML table
    ([A, f"admin={B}"], (("*", A), ("admin", B))),  # with a default
    ((("*", A), ("admin", B)), (("*", A), ("admin", B))),  # the normal form is a fixed point
    ([], None),
])
def test_parse_forms(value, normal):
    assert appmap.parse(value) == normal


@pytest.mark.parametrize("value, message", [
    ([f"http={A}", f"http={B}"], f"app: listener 'http' is given two apps ({A}, {B})"),
    ([A, f"*={B}"], f"app: the default app is given twice ({A}, {B})"),
    ("http=not a spec", "app: 'http=not a spec' is not MODULE:ATTRIBUTE"),
    ("nospec", "app: 'nospec' is not MODULE:ATTRIBUTE"),
    ({"http": 3}, "app.http = 3: expected \"MODULE:ATTR\""),  # the TOML key as written
    ({"a:b": A}, "app.\"a:b\": 'a:b' is not a listener name"),
])
def test_parse_refuses(value, message):
    with pytest.raises(ConfigError) as err:
        appmap.parse(value)
    assert str(err.value).startswith(message)


def test_resolve_by_name_with_default_and_shared_names():
    app = appmap.parse([A, f"http={B}"])
    # systemd gives one name to every ListenStream= of a unit: both keys are addresses then
    listeners = {"127.0.0.1:80": "http", "[::1]:80": "http", "admin": "admin", "unix:/x": ""}
    assert appmap.resolve(app, listeners) == {"127.0.0.1:80": B, "[::1]:80": B, "admin": A, "unix:/x": A}
    assert appmap.resolve(A, listeners) == dict.fromkeys(listeners, A)
    assert appmap.resolve(None, {"k": ""}) == {"k": None}  # the built-in app


def test_resolve_refuses_names_no_listener_has_and_listeners_without_app():
    app = appmap.parse([f"http={A}", f"admin={B}"])
    with pytest.raises(ConfigError, match=r"^app: no listener is named 'admin' \(LISTEN_FDNAMES has "
                       r"http, sockserve.socket; set FileDescriptorName=admin"):
        appmap.resolve(app, {"http": "http", "sockserve.socket": "sockserve.socket"}, "LISTEN_FDNAMES")
    with pytest.raises(ConfigError, match=r"^app: listener 127.0.0.1:9 \(unnamed\) has no app"):
        appmap.resolve(app, {"http": "http", "admin": "admin", "127.0.0.1:9": ""})


def test_bind_names_and_config():
    c = make_config({"bind": ["http=127.0.0.1:8000", "unix:/run/x.sock"], "app": [f"http={A}", B]})
    assert [(n, str(a)) for n, a in c.binds()] == [("http", "127.0.0.1:8000"), ("", "unix:/run/x.sock")]
    told = c.for_worker(3, {"http": "http", "unix:/run/x.sock": ""})
    assert told["apps"] == {"http": A, "unix:/run/x.sock": B} and told["app"] == B
    assert told["listeners"] == {"http": "http", "unix:/run/x.sock": ""}
    assert told["keys"] == ["http", "unix:/run/x.sock"]
    assert make_config({"app": A}).for_worker(1, ("k",))["apps"] == {"k": A}  # as before: one app
    with pytest.raises(ConfigError, match="bind: the name 'a' is given twice"):
        make_config({"bind": ["a=127.0.0.1:1", "a=127.0.0.1:2"]})
    with pytest.raises(ConfigError, match="bind: duplicate address"):
        make_config({"bind": ["a=127.0.0.1:1", "b=127.0.0.1:1"]})


def test_listener_keys_name_when_alone_else_address():
    pairs = [("http", "127.0.0.1:80"), ("http", "[::1]:80"), ("admin", "127.0.0.1:9"), ("", "unix:/x")]
    assert appmap.listener_keys(pairs) == ["127.0.0.1:80", "[::1]:80", "admin", "unix:/x"]
