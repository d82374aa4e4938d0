"""Loading the app: import ``module:attr``, detect its interface, build its adapter.

``load_adapter`` imports ``module:attr`` (or takes the built-in hello app),
picks the interface and returns an adapter (stream.py, asgi.py; WSGI apps go
through wsgi.py into asgi.py).  Every adapter offers ``protocol_factory``
(usable with ``loop.connect_accepted_socket`` and ``loop.create_server``),
``ssl`` (a context or None), ``open``/``served`` counters,
``startup``/``shutdown`` (ASGI lifespan), and for a stop (drain.py)
``begin_drain``/``close_idle``/``busy``/``transports()``/``tasks``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Any

from .. import apploader
from . import hello
from .accesslog import AccessLogMiddleware
from .asgi import AppStartupError, AsgiAdapter
from .http import ssl_context
from .stream import StreamAdapter
from .wsgi import wrap_wsgi

__all__ = ["AppLoadError", "AppStartupError", "AsgiAdapter", "StreamAdapter", "adapter_for", "load_adapter"]

log = logging.getLogger("sockserve.worker")


class AppLoadError(Exception):
    """The app cannot be loaded; ``str()`` is ``<ExcType>: <message>`` on one line."""


# ---------------------------------------------------------------- loading
def import_app(spec: str, app_dir: str | None = None, factory: bool = False) -> Any:
    """The object named by ``module:attr`` (attr may be dotted), looked up first in ``app_dir``
    (None: the current directory); with ``factory``, what calling it returns (apploader)."""
    apploader.add_to_path(app_dir)
    obj = apploader.import_object(spec)
    return apploader.call_factory(obj, spec) if factory else obj


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
    if count == 0:
        raise TypeError(f"a {kind} taking no arguments is not an app: if it is an app factory, "
                        "set factory = true (--factory)")
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


def load_adapter(spec: str | None, interface: str, worker_id: int, loop: asyncio.AbstractEventLoop,
                 options: dict[str, Any] | None = None) -> StreamAdapter | AsgiAdapter:
    """The adapter for the app ``spec`` (None: built-in hello); raises AppLoadError.

    ``options``: the worker's settings (settings.worker_keys(): HTTP, TLS,
    threads, access log, app_dir and factory).
    """
    options = options or {}
    try:
        app = (hello.make_hello_app(worker_id, os.getpid()) if spec is None
               else import_app(spec, options.get("app_dir"), bool(options.get("factory"))))
    except Exception as exc:  # anything the app's import raises
        raise AppLoadError(_one_line(exc)) from exc
    return adapter_for(app, interface, worker_id, loop, options)


def adapter_for(app: Any, interface: str, worker_id: int, loop: asyncio.AbstractEventLoop,
                options: dict[str, Any] | None = None) -> StreamAdapter | AsgiAdapter:
    """The adapter for an app object (``load_adapter``'s, and ``sockserve.listen``'s); raises
    AppLoadError when it is no app of ``interface`` (auto: detected)."""
    options = options or {}
    try:
        kind = detect_interface(app) if interface == "auto" else interface
        if not callable(app):
            raise TypeError(f"a {type(app).__name__} object is not callable")
        if kind == "stream":
            return StreamAdapter(app, loop, ssl=ssl_context(options))
        lifespan = "auto"
        if kind == "wsgi":
            app, lifespan = wrap_wsgi(app, int(options.get("threads", 10))), "off"
        elif inspect.isclass(app):  # ASGI2: a class taking the scope
            from uvicorn.middleware.asgi2 import ASGI2Middleware

            app = ASGI2Middleware(app)
        if options.get("access_log"):
            app = AccessLogMiddleware(app, str(options.get("access_log_format")), worker_id)
        return AsgiAdapter(app, loop, lifespan=lifespan, options=options)
    except Exception as exc:  # anything the app's wrapping raises
        raise AppLoadError(_one_line(exc)) from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
