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
