"""Config validation: one-line errors naming the key."""

import pytest

from sockserve.config import ConfigError, make_config, parse_address


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
])
def test_bad_values_give_one_line_errors(values, why):
    with pytest.raises(ConfigError, match=why) as info:
        make_config(values)
    assert "\n" not in str(info.value)


def test_addresses():
    assert str(parse_address("[::1]:80")) == "[::1]:80"
    assert parse_address("unix:/run/x.sock").path == "/run/x.sock"
    assert make_config({"bind": "127.0.0.1:1,127.0.0.1:2"}).bind == ("127.0.0.1:1", "127.0.0.1:2")
