"""The app mapping's refusals and where its messages point (issue: the systemd verifier's
findings 1-4): the mappings the docs refuse are refused, errors from the TOML file name the
file and the key as the file writes it, and a missing name's advice fits where names come
from (bind, the TOML file's bind, systemd's sockets at start, at a reload, in check)."""

from __future__ import annotations

import pytest

from sockserve import appmap
from sockserve.cli import gather
from sockserve.config import ConfigError, make_config, validate_for_start

A, B = "tests.apps.sample:asgi_app", "tests.apps.sample:wsgi_app"


@pytest.mark.parametrize("value, message", [
    ({}, "app = {}: an empty table names no listener"),  # served hello everywhere before
    ([f"={B}"], f"app: '={B}': '' is not a listener name"),  # --app =MODULE:ATTR, as --bind =ADDR
    (f"http={A},={B}", f"app: '={B}': '' is not a listener name"),  # SOCKSERVE_APP
    ({"admin": "adminapp"}, 'app.admin: "adminapp" is not MODULE:ATTRIBUTE'),  # the TOML key, TOML quoting
    ({"a:b": A}, "app.\"a:b\": 'a:b' is not a listener name"),
    ({"http": 3}, 'app.http = 3: expected "MODULE:ATTR"'),
])
def test_mappings_the_docs_refuse_are_refused(value, message):
    with pytest.raises(ConfigError) as err:
        appmap.parse(value)
    assert str(err.value).startswith(message)


def config_from(tmp_path, text: str, *argv: str):
    path = tmp_path / "sockserve.toml"
    path.write_text(text)
    values = gather(["--config", str(path), *argv], {})
    return path, values


def test_a_toml_list_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        config_from(tmp_path, f'app = ["{A}"]\n')
    assert str(err.value) == (f"config file {tmp_path}/sockserve.toml: app = ['{A}']: expected "
                              '"MODULE:ATTR" or a table { NAME = "MODULE:ATTR", ... }')


def test_errors_of_the_files_values_name_the_file(tmp_path):
    path, values = config_from(tmp_path, 'app = { admin = "adminapp" }\n')
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert str(err.value) == f'config file {path}: app.admin: "adminapp" is not MODULE:ATTRIBUTE'
    path, values = config_from(tmp_path, 'workers = "many"\n')
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert str(err.value) == f"config file {path}: workers: 'many' is not a valid int"
    _, values = config_from(tmp_path, 'app = { admin = "adminapp" }\n', "--app", A)  # the CLI's wins
    assert make_config(values).app == A


def test_a_systemd_config_checked_without_sockets_is_not_told_to_bind(tmp_path):
    path, values = config_from(tmp_path, f'app = {{ http = "{A}", admin = "{B}" }}\n')
    with pytest.raises(ConfigError) as err:
        validate_for_start(make_config(values), inherited=False, explicit_bind=False)
    assert "--bind" not in str(err.value) and "bind =" not in str(err.value)
    assert str(err.value) == (f"config file {path}: app.admin: no listener is named 'admin' (bind is "
                              "not set, so the names are those of the sockets systemd passes; check "
                              "with: sockserve check --socket-activated)")


def test_bind_from_the_file_is_advised_in_the_files_words(tmp_path):
    path, values = config_from(tmp_path, 'bind = ["http=127.0.0.1:1"]\n'
                               f'app = {{ http = "{A}", admn = "{B}" }}\n')
    with pytest.raises(ConfigError) as err:
        validate_for_start(make_config(values), inherited=False, explicit_bind=True)
    assert str(err.value) == (f"config file {path}: app.admn: no listener is named 'admn' (bind names: "
                              'http; name one in the file: bind = ["admn=HOST:PORT"])')


@pytest.mark.parametrize("source, advice", [
    ("LISTEN_FDNAMES", "LISTEN_FDNAMES has http; set FileDescriptorName=admin on a socket unit "
     "of the service"),
    ("reload", "this master was started with the sockets http; the service must be restarted to receive "
     "another: systemctl stop it, start the socket unit with FileDescriptorName=admin, then start it "
     "(a reload cannot add a socket)"),
    ("master", "the running master's sockets are http; a new socket (FileDescriptorName=admin) takes a "
     "restart of the service, not a reload"),
    ("units", "the socket units of the service name their sockets http; set FileDescriptorName=admin on one"),
    ("fdnames", "--fdnames has http"),
])
def test_a_name_systemd_did_not_pass_is_explained_by_where_names_came_from(source, advice):
    config = make_config({"app": [f"http={A}", f"admin={B}"]})
    with pytest.raises(ConfigError) as err:
        validate_for_start(config, inherited=True, explicit_bind=False, listeners={"http": "http"},
                           source=source)
    assert str(err.value) == f"app: no listener is named 'admin' ({advice})"


def test_listener_labels_quote_the_name_alike_under_systemd_and_bind():
    config = make_config({"app": [f"http={A}"], "bind": ["http=127.0.0.1:1", "admin=127.0.0.1:2"]})
    with pytest.raises(ConfigError) as bound:
        validate_for_start(config, inherited=False, explicit_bind=True)
    with pytest.raises(ConfigError) as passed:
        validate_for_start(make_config({"app": [f"http={A}"]}), inherited=True, explicit_bind=False,
                           listeners={"http": "http", "admin": "admin"})
    assert "listener 'admin' (127.0.0.1:2) has no app" in str(bound.value)
    assert "listener 'admin' has no app" in str(passed.value)


@pytest.mark.parametrize("value", ["", "  ", [""], [" , "]])
def test_an_empty_app_is_refused_not_the_built_in_app(value):
    """``app = ""`` in the file or ``--app ''`` served the hello app; leaving app out does."""
    with pytest.raises(ConfigError, match=r"^app: '.*' is empty: give MODULE:ATTR"):
        appmap.parse(value)


def test_range_errors_of_the_files_values_name_the_file_too(tmp_path):
    path, values = config_from(tmp_path, "workers = 0\nbacklog = 70000\n")
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert str(err.value) == f"config file {path}: workers: must be at least 1, got 0"
    _, values = config_from(tmp_path, "workers = 0\n", "--workers", "2", "--backlog", "0")
    with pytest.raises(ConfigError) as err:  # the command line's value: no file to name
        make_config(values)
    assert str(err.value) == "backlog: must be 1..65535, got 0"
