"""ASGI (and wrapped WSGI) apps served by uvicorn's HTTP/1.1 protocol classes.

The adapter is the part of uvicorn's ``Server`` a worker needs: the shared
``ServerState`` (connections, tasks, default headers with a Date refreshed
once a second), the lifespan, the TLS context of ``uvicorn.Config`` and a
graceful drain.  Connections come from runtime.py (handed over or accepted).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from email.utils import formatdate
from typing import Any

from . import http

CLOSE = (b"connection", b"close")
log = logging.getLogger("sockserve.worker")


class _Counted:
    """ASGI middleware counting what the app finished (``adapter._served``); ``.app`` keeps the
    chain walkable (guards.runs_wsgi)."""

    def __init__(self, app: Any, adapter: AsgiAdapter) -> None:
        self.app, self.adapter = app, adapter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] != "lifespan":
                self.adapter._served += 1


class AppStartupError(Exception):
    """The ASGI lifespan startup of the app failed."""


class AsgiAdapter:
    """An ASGI app served by uvicorn's protocol classes with sockserve's HTTP ``options``."""

    interface = "asgi"

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, *, asgi2: bool = False,
                 lifespan: str = "auto", options: dict[str, Any] | None = None,
                 protocol: type[asyncio.Protocol] | None = None) -> None:
        from uvicorn.server import ServerState

        options = options or {}
        self.loop = loop
        self.protocol_class = protocol or http.protocol_class(str(options.get("http", "auto")))
        self.config = http.make_config(app, options, interface="asgi2" if asgi2 else "asgi3",
                                       http=self.protocol_class, lifespan=lifespan, log_config=None,
                                       access_log=False)
        self.ssl = self.config.ssl if self.config.is_ssl else None  # certificates read at boot
        log.debug("http: %s%s", self.protocol_class.__name__, " over TLS" if self.ssl else "")
        self.date_header = bool(options.get("date_header", True))
        self.state = ServerState()
        self._served = 0
        self.config.loaded_app = self._counted(self.config.loaded_app)
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
        """HTTP requests (and WebSocket sessions) the app finished.  Not uvicorn's
        ``total_requests``: it skips a response whose client closed before the app's last
        (empty) body message, which a2wsgi sends after the whole body: most WSGI requests."""
        return self._served

    def _counted(self, app: Any) -> Any:
        return _Counted(app, self)

    def _update_date(self) -> None:
        """Refresh the Date header once a second, as uvicorn's Server does."""
        date = [(b"date", formatdate(usegmt=True).encode())] if self.date_header else []
        close = [CLOSE] if self._draining else []
        self.state.default_headers = [*date, *self.config.encoded_headers, *close]
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


def _in_flight(connection: Any) -> bool:
    cycle = getattr(connection, "cycle", None)
    return cycle is not None and not cycle.response_complete
