"""uvicorn's HTTP/1.1 machinery for a worker: protocol class (``--http``) and ``uvicorn.Config``.

sockserve's HTTP settings map one-to-one to ``uvicorn.Config`` arguments
(proxy_headers, forwarded_allow_ips, root_path, timeout_keep_alive,
limit_concurrency, server_header, date_header, ssl_*).  An argument the
installed uvicorn lacks (Debian 12 ships 0.17.6) is dropped with one warning
line when it differs from the default, never a crash.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from typing import Any

log = logging.getLogger("sockserve.worker")

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
PASSED = ("proxy_headers", "forwarded_allow_ips", "root_path", "timeout_keep_alive", "server_header",
          "date_header", "ssl_certfile", "ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs",
          "ssl_ciphers")


class HttpSetupError(Exception):
    """The requested HTTP implementation cannot run here; ``str()`` says why."""


def protocol_class(choice: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's protocol for ``auto|h11|httptools`` (auto: httptools when it imports and parses)."""
    if choice != "h11":
        try:
            import httptools
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

            _probe_httptools(httptools)
            return HttpToolsProtocol
        except Exception as exc:  # missing, or too old/new for this uvicorn
            if choice == "httptools":
                raise HttpSetupError(f"http httptools: not usable here ({exc}); use --http h11") from exc
            log.debug("httptools unusable (%s); using h11", exc)
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def _probe_httptools(httptools: Any) -> None:
    """Parse one request the way uvicorn does; raises if this httptools cannot."""
    seen: dict[str, Any] = {}

    class Probe:
        def on_url(self, url: bytes) -> None:
            seen["url"] = httptools.parse_url(url).path

        def on_message_complete(self) -> None:
            seen["done"] = True

    parser = httptools.HttpRequestParser(Probe())
    parser.feed_data(b"GET /probe?q=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    if seen != {"url": b"/probe", "done": True} or parser.get_method() != b"GET":
        raise RuntimeError(f"httptools {getattr(httptools, '__version__', '?')} parsed {seen}")


def uvicorn_options(options: dict[str, Any]) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments for sockserve's settings ``options`` (worker config)."""
    from ..settings import BY_NAME

    kwargs = {key: options.get(key, BY_NAME[key].default) for key in PASSED}
    kwargs["limit_concurrency"] = int(options.get("limit_concurrency") or 0) or None
    kwargs["ssl_cert_reqs"] = CERT_REQS[str(options.get("ssl_cert_reqs", "none"))]
    return kwargs


def make_config(app: Any, options: dict[str, Any], **fixed: Any) -> Any:
    """A loaded ``uvicorn.Config`` for ``app``; arguments this uvicorn lacks are dropped with a warning."""
    import uvicorn

    params = inspect.signature(uvicorn.Config).parameters
    kwargs = uvicorn_options(options) | fixed
    for key in [k for k in kwargs if k not in params]:
        value = kwargs.pop(key)
        if value is not None:
            log.warning("uvicorn %s has no %s option: %s=%r is ignored", uvicorn.__version__, key, key,
                        value)
    config = uvicorn.Config(app, **kwargs)
    config.load()
    return config


def ssl_context(options: dict[str, Any]) -> ssl.SSLContext | None:
    """uvicorn's server TLS context for ``options`` (for stream handlers), None without a certificate."""
    if not options.get("ssl_certfile"):
        return None
    from uvicorn.config import SSL_PROTOCOL_VERSION, create_ssl_context

    kwargs = uvicorn_options(options)
    return create_ssl_context(kwargs["ssl_certfile"], kwargs["ssl_keyfile"], kwargs["ssl_keyfile_password"],
                              SSL_PROTOCOL_VERSION, kwargs["ssl_cert_reqs"], kwargs["ssl_ca_certs"],
                              kwargs["ssl_ciphers"])
