"""sockserve's HTTP settings become uvicorn.Config arguments (the installed uvicorn, for real)."""

from __future__ import annotations

import logging
import ssl

from sockserve.settings import defaults
from sockserve.worker import http


async def app(scope, receive, send) -> None:  # pragma: no cover - never served here
    return None


def test_settings_map_to_uvicorn_arguments():
    kwargs = http.uvicorn_options(defaults() | {"limit_concurrency": 0, "ssl_cert_reqs": "required"})
    assert kwargs["limit_concurrency"] is None and kwargs["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert http.uvicorn_options(defaults() | {"limit_concurrency": 7})["limit_concurrency"] == 7
    config = http.make_config(app, defaults() | {"root_path": "/api", "timeout_keep_alive": 2.5,
                                                 "forwarded_allow_ips": "10.0.0.1"})
    assert (config.root_path, config.timeout_keep_alive) == ("/api", 2.5)
    assert config.forwarded_allow_ips in ("10.0.0.1", ["10.0.0.1"])  # a str before uvicorn 0.2x


def test_an_option_this_uvicorn_lacks_is_one_warning_not_a_crash(caplog):
    """What Debian 12's uvicorn 0.17.6 does with an option only a newer uvicorn has."""
    with caplog.at_level(logging.WARNING, logger="sockserve.worker"):
        config = http.make_config(app, defaults(), option_from_the_future=3)
    assert config.loaded
    [record] = [r for r in caplog.records if "option_from_the_future" in r.getMessage()]
    assert record.getMessage().endswith("has no option_from_the_future option: option_from_the_future=3 "
                                        "is ignored")
