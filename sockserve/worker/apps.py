"""Application adapters: stream handlers, ASGI apps and WSGI apps.

``load_adapter`` imports ``module:attr`` (or the built-in hello app) and returns an adapter:
``protocol_factory`` (for ``connect_accepted_socket`` and ``create_server``), ``open``/``served``,
``startup``/``shutdown`` (ASGI lifespan), and for a stop (drain.py) ``begin_drain``/``close_idle``/
``busy``/``transports()``/``tasks``.  HTTP is uvicorn's protocol code (httptools, else h11).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from . import hello
from .stream import StreamAdapter

log = logging.getLogger("sockserve.worker")


class AppLoadError(Exception):
    """The app cannot be loaded; ``str()`` is ``<ExcType>: <message>`` on one line."""


class AppStartupError(Exception):
    """The ASGI lifespan startup of the app failed."""


# ---------------------------------------------------------------- loading
def import_app(spec: str) -> Any:
    """The object named by ``module:attr`` (attr may be dotted), cwd on sys.path."""
    module_name, sep, attrs = spec.partition(":")
    if not sep or not module_name or not attrs:
        raise ValueError(f"{spec!r} is not MODULE:ATTRIBUTE")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


def detect_interface(app: Any) -> str:
    """``stream``, ``asgi`` or ``wsgi`` for ``app``; TypeError if it fits none."""
    if inspect.isclass(app):
        return "asgi"  # an ASGI class, as uvicorn takes them
    if not callable(app):
        raise TypeError(f"a {type(app).__name__} object is not callable")
    call = app if inspect.isroutine(app) else getattr(app, "__call__", app)  # noqa: B004
    is_async = inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app)
    count = _positional_count(app)
    if is_async and count == 2:
        return "stream"
    if is_async and count in (3, -1):
        return "asgi"
    if not is_async and count in (2, -1):
        return "wsgi"
    kind = "coroutine function" if is_async else "function"
    raise TypeError(f"a {kind} taking {count} arguments is not a stream handler "
                    "(reader, writer), an ASGI app (scope, receive, send) or a WSGI app "
                    "(environ, start_response)")


def _positional_count(app: Any) -> int:
    """Positional parameters of ``app``; -1 when it takes ``*args``."""
    try:
        params = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):
        return -1
    kinds = {p.kind for p in params}
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return -1
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in positional)


def load_adapter(spec: str | None, interface: str, worker_id: int,
                 loop: asyncio.AbstractEventLoop, access_log: bool = False) -> StreamAdapter | AsgiAdapter:
    """The adapter for the app ``spec`` (None: built-in hello); raises AppLoadError."""
    try:
        app = hello.make_hello_app(worker_id, os.getpid()) if spec is None else import_app(spec)
        kind = detect_interface(app) if interface == "auto" else interface
        if not callable(app):
            raise TypeError(f"a {type(app).__name__} object is not callable")
        if kind == "stream":
            return StreamAdapter(app, loop)
        if kind == "wsgi":
            return AsgiAdapter(wrap_wsgi(app), loop, lifespan="off", access_log=access_log)
        return AsgiAdapter(app, loop, asgi2=inspect.isclass(app), access_log=access_log)
    except Exception as exc:  # anything the app's import raises
        text = " ".join(str(exc).split())
        raise AppLoadError(f"{type(exc).__name__}: {text}" if text else type(exc).__name__) from exc


def wrap_wsgi(app: Callable[..., Any]) -> Any:
    """An ASGI app running the WSGI ``app``: a2wsgi when importable, else uvicorn's adapter."""
    try:
        from a2wsgi import WSGIMiddleware
    except ImportError:
        from uvicorn.middleware.wsgi import WSGIMiddleware
    return WSGIMiddleware(app)


# ---------------------------------------------------------------- ASGI / WSGI
def http_protocol_class() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol when httptools imports and parses, else its h11 one."""
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        _probe_httptools(httptools)
        return HttpToolsProtocol
    except Exception as exc:  # missing, or too old/new for this uvicorn
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


class AsgiAdapter:
    """An ASGI app served by uvicorn's HTTP/1.1 protocol classes."""

    interface = "asgi"

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, *, asgi2: bool = False,
                 lifespan: str = "auto", access_log: bool = False,
                 http: type[asyncio.Protocol] | None = None) -> None:
        import uvicorn
        from uvicorn.server import ServerState

        self.loop = loop
        self.protocol_class = http or http_protocol_class()
        self.config = uvicorn.Config(app, interface="asgi2" if asgi2 else "asgi3",
                                     http=self.protocol_class, lifespan=lifespan,
                                     log_config=None, access_log=access_log)
        self.config.load()
        self.state = ServerState()
        self.tasks = self.state.tasks  # requests running (uvicorn's set; drain.stop cancels them)
        self.state.default_headers = list(self.config.encoded_headers)
        self.lifespan = self.config.lifespan_class(self.config)
        params = inspect.signature(self.protocol_class).parameters
        self._wants_app_state = "app_state" in params  # uvicorn >= 0.29
        self._date_timer: asyncio.TimerHandle | None = None
        self._lifespan_started = False
        self._draining = False
        # an idle connection gets, while we drain, the patience keep-alive gets anyway (uvicorn: 5 s)
        self.idle_grace = float(self.config.timeout_keep_alive)
        self._update_date()

    def transports(self) -> list[asyncio.BaseTransport]:  # closing one: the app gets http.disconnect
        return [connection.transport for connection in self.state.connections]

    def protocol_factory(self) -> asyncio.Protocol:
        kwargs: dict[str, Any] = {"config": self.config, "server_state": self.state, "_loop": self.loop}
        if self._wants_app_state:
            kwargs["app_state"] = getattr(self.lifespan, "state", {})
        return self.protocol_class(**kwargs)

    @property
    def open(self) -> int:
        return len(self.state.connections)

    @property
    def served(self) -> int:
        return self.state.total_requests

    def _update_date(self) -> None:
        """Refresh the Date header once a second, as uvicorn's Server does."""
        date = formatdate(usegmt=True).encode()
        close = [CLOSE] if self._draining else []
        self.state.default_headers = [(b"date", date), *self.config.encoded_headers, *close]
        if self._date_timer is not None:
            self._date_timer.cancel()
        self._date_timer = self.loop.call_later(1.0, self._update_date)

    async def startup(self) -> None:
        self._lifespan_started = True
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            raise AppStartupError("the application's lifespan startup failed")

    async def shutdown(self) -> None:
        if self._date_timer is not None:
            self._date_timer.cancel()
        if self._lifespan_started:  # LifespanOn.shutdown waits forever without a startup
            await self.lifespan.shutdown()

    def begin_drain(self) -> None:
        """Every response from now on says ``Connection: close``; requests in flight finish.

        Idle connections are left open for the grace in drain.py: a keep-alive
        client's next request (or a handed-over connection's first) is answered
        and then closed, instead of being reset by a close with unread data.
        """
        self._draining = True
        self._update_date()
        for connection in list(self.state.connections):
            if hasattr(connection, "default_headers"):  # uvicorn < 0.2x copies them per connection
                connection.default_headers = [*connection.default_headers, CLOSE]
            if _in_flight(connection):
                connection.shutdown()

    def close_idle(self) -> None:
        """Close every connection with no request in flight (the grace is over)."""
        for connection in list(self.state.connections):
            if not _in_flight(connection):
                connection.shutdown()

    def busy(self) -> bool:
        return bool(self.state.connections or self.state.tasks)


CLOSE = (b"connection", b"close")


def _in_flight(connection: Any) -> bool:
    cycle = getattr(connection, "cycle", None)
    return cycle is not None and not cycle.response_complete
