"""Config validation: one-line errors naming the key."""

import pytest

from sockserve.config import ConfigError, bind_under_systemd, make_config, parse_address


def test_defaults():
    c = make_config({}, cpu_count=3)
    assert c.workers == 3 and c.policy == "rr" and c.bind == ("127.0.0.1:8000",) and c.backlog == 511


@pytest.mark.parametrize("values, why", [
    ({"workers": 0}, "workers: must be at least 1"),
    ({"workers": "x"}, "workers: 'x' is not a valid int"),
    ({"policy": "fifo"}, "policy: 'fifo' is not one of rr, shared, reuseport"),
    ({"bind": "nope"}, "expected HOST:PORT"),
    ({"bind": "1.2.3.4:99999"}, "port must be"),
    ({"bind": "unix:relative"}, "must be absolute"),
    ({"bind": ["127.0.0.1:1", "127.0.0.1:1"]}, "duplicate"),
    ({"app": "not a spec"}, "MODULE:ATTRIBUTE"),
    ({"graceful_timeout": -1}, "graceful_timeout: must be a positive"),
    ({"colour": "red"}, "unknown setting 'colour'"),
    ({"factory": "maybe"}, "factory: 'maybe' is not a valid bool"),
    ({"factory": True}, "factory: needs an app"),
    ({"virtualenv": "/srv/v", "worker_python": "/usr/bin/python3"}, "virtualenv: set either"),
    ({"app_dir": ""}, "app_dir: empty path"),
])
def test_bad_values_give_one_line_errors(values, why):
    with pytest.raises(ConfigError, match=why) as info:
        make_config(values)
    assert "\n" not in str(info.value)


def test_addresses():
    assert str(parse_address("[::1]:80")) == "[::1]:80"
    assert parse_address("unix:/run/x.sock").path == "/run/x.sock"
    assert make_config({"bind": "127.0.0.1:1,127.0.0.1:2"}).bind == ("127.0.0.1:1", "127.0.0.1:2")


@pytest.mark.parametrize(("values", "inherited", "explicit_bind", "why"), [
    ({"bind": "127.0.0.1:9"}, True, True, "bind: under systemd the socket unit sets the address"),
    ({"policy": "reuseport"}, True, False, "policy: reuseport needs sockserve to bind"),
    ({"policy": "reuseport"}, False, False, None),
    ({"bind": "127.0.0.1:9"}, False, True, None),
    ({}, True, False, None),
])
def test_validate_for_start_refuses_what_the_environment_forbids(values, inherited, explicit_bind, why):
    from sockserve.config import validate_for_start

    config = make_config(values)
    if why is None:
        validate_for_start(config, inherited=inherited, explicit_bind=explicit_bind)
        return
    with pytest.raises(ConfigError, match=why) as info:
        validate_for_start(config, inherited=inherited, explicit_bind=explicit_bind)
    assert "\n" not in str(info.value)


def test_validate_for_start_checks_the_values_of_a_hand_made_config():
    from sockserve.config import Config, validate_for_start

    with pytest.raises(ConfigError, match="workers: must be at least 1"):
        validate_for_start(Config(workers=0), inherited=False, explicit_bind=False)


@pytest.mark.parametrize(("before", "after", "why"), [
    ({}, {"workers": 4, "app": "a:b", "graceful_timeout": 3}, None),
    ({}, {"policy": "shared"}, None),
    ({"policy": "shared"}, {"policy": "rr"}, None),
    ({}, {"bind": "127.0.0.1:9"}, "bind: .* needs a restart"),
    ({}, {"policy": "reuseport"}, "policy: rr -> reuseport needs a restart"),
    ({"policy": "reuseport"}, {"policy": "shared"}, "policy: reuseport -> shared needs a restart"),
    ({}, {"control_socket": "/run/x.sock"}, "control_socket: .* needs a restart"),
    ({}, {"hooks": "a:b"}, "hooks: .* needs a restart"),
    ({}, {"unix_socket_mode": "0660"}, "unix_socket_mode: .* needs a restart"),
    ({}, {"chdir": "/srv"}, "chdir: .* needs a restart"),
    ({}, {"app_dir": "/srv/app", "virtualenv": "/srv/venv"}, None),  # told to new workers
    ({}, {"ssl_certfile": "/etc/x.pem", "log_level": "debug", "threads": 4}, None),
])
def test_validate_reload_refuses_what_only_a_restart_changes(before, after, why):
    from sockserve.config import validate_reload

    running, new = make_config(before), make_config({**before, **after})
    if why is None:
        validate_reload(running, new)
        return
    with pytest.raises(ConfigError, match=why):
        validate_reload(running, new)


def test_app_loading_keys():
    c = make_config({"app": "m:a", "virtualenv": "/srv/app/venv", "factory": "yes", "app_dir": "/srv/app"})
    assert c.worker_python == "/srv/app/venv/bin/python" and c.factory is True
    told = c.for_worker(1, ("http",))
    assert (told["app_dir"], told["factory"]) == ("/srv/app", True)
    assert make_config({"factory": "0", "app": "m:a"}).factory is False


def test_bind_under_systemd_names_the_socket_unit_to_edit():
    line = bind_under_systemd("/etc/sockserve/web.toml")
    assert "remove bind from /etc/sockserve/web.toml" in line
    assert "systemctl edit sockserve@web.socket" in line
    assert "systemctl edit sockserve.socket" in bind_under_systemd("/etc/sockserve/sockserve.toml")
    assert "\n" not in line


@pytest.mark.parametrize("given, expected", [("yes", True), ("0", False), (True, True), ("OFF", False)])
def test_booleans_from_env_and_toml(given, expected):
    assert make_config({"access_log": given}).access_log is expected


@pytest.mark.parametrize("values, why", [
    ({"access_log": "maybe"}, "access_log: 'maybe' is not a valid bool"),
    ({"ssl_keyfile": "/k.pem"}, "ssl_keyfile: needs ssl_certfile"),
    ({"ssl_certfile": "/c.pem", "ssl_cert_reqs": "required"}, "needs ssl_ca_certs"),
    ({"unix_socket_mode": "0999"}, "not an octal mode"),
    ({"root_path": "api/"}, "root_path: 'api/' must start with /"),
    ({"access_log_format": "{nope}"}, "access_log_format:"),
    ({"http": "h2"}, "http: 'h2' is not one of auto, h11, httptools"),
    ({"threads": 0}, "threads: must be 1..1024"),
])
def test_bad_http_values(values, why):
    with pytest.raises(ConfigError, match=why):
        make_config(values)


def test_worker_is_told_every_worker_setting():
    told = make_config({"threads": 3, "root_path": "/api"}).for_worker(2, ("k",))
    assert told["threads"] == 3 and told["root_path"] == "/api" and told["generation"] == 2
    assert "workers" not in told and told["keys"] == ["k"]


@pytest.mark.parametrize("argv", [["--timeout", "30"], ["--limit", "5"], ["--header", "5"]])
def test_peer_flags_are_not_taken_as_abbreviations(argv, capsys):
    """gunicorn's --timeout is not sockserve's --timeout-keep-alive: an unknown flag is an error."""
    from sockserve.cli import gather

    with pytest.raises(SystemExit) as exit_info:
        gather(argv, {})
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
