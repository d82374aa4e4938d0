"""HTTP limits: what one client may hold in a worker, and for how long.

uvicorn's protocol classes parse (httptools or h11); worker/limited.py only watches them
(deadlines, a byte count while a head may be over the limit) and this module sets h11's own
head-size knob.  uvicorn's ``timeout_keep_alive`` and ``limit_concurrency`` are passed by
worker/http.py.

| setting | default | past it | from |
|---|---|---|---|
| ``idle_timeout`` | 10 s | a connection silent since it opened is closed | nginx ``client_header_timeout`` |
| ``headers_timeout`` | 60 s | ``408 Request Timeout``, close | Node ``server.headersTimeout`` |
| ``max_header_size`` | 16 KiB, any reads | ``431`` (h11, split: ``400``) | Node ``--max-http-header-size`` |
| ``MAX_PIPELINED`` | 32 queued requests | reading pauses until answered | sockserve (uvicorn: none) |
| ``timeout_keep_alive`` | 5 s | an idle keep-alive connection is closed | uvicorn ``timeout_keep_alive`` |
| ``limit_concurrency`` | none | ``503 Service Unavailable`` | uvicorn ``limit_concurrency`` |

``headers_timeout`` runs from the first byte of each request (a keep-alive
connection's later requests too, and bytes such as blank lines that begin no head)
until its head is parsed; bytes trickling in (slowloris) do not extend it.

Granularity (issue 14): neither timeout has a timer per connection or request.  One sweep
per worker (worker/sweep.py, like Node's ``connectionsCheckingInterval``) looks at every
connection each ``S = min(1 s, shorter timeout / 8)`` seconds (1 s by default; at least
10 ms): ``idle_timeout`` fires within ``[T, T + S]`` of the connection's start, and
``headers_timeout`` within ``[T, T + 2 S]`` of the head's first byte (a head is timed from
the first sweep that sees it).

Head size: a read of at most ``min(4 KiB, max_header_size)`` bytes that begins between
requests (or before the first) holds no head over the limit, so it is handed to uvicorn as
it is.  Any other read (larger, a head still incomplete, requests queued) is
parsed 4 KiB at a time: an incomplete head is counted slice by slice (431 once over; the
part of it in the read or slice where it began counts by what is parsed of it, so up to one
slice more may be held until the next), a head whole in one read is refused before it is
parsed, and each head parsed on this path is checked whole (request line and ``name:value``
lines, CRLF ended) before the app is called: 431 in turn, after the requests before it.
Stream (``reader, writer``) apps get none of these: sockserve does not know their protocol.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any

from .limited import FEED_SLICE, MAX_PIPELINED, head_fits, limited

__all__ = ["FEED_SLICE", "MAX_PIPELINED", "HttpLimits", "apply", "guarded", "head_fits"]


@dataclass(frozen=True)
class HttpLimits:
    idle_timeout: float = 10.0  # seconds before a new connection's first byte
    headers_timeout: float = 60.0  # seconds from a request's first byte to the end of its head
    max_header_size: int = 16 * 1024  # bytes of one request head

    @classmethod
    def from_worker_config(cls, config: dict[str, Any]) -> HttpLimits:
        """The limits in SOCKSERVE_WORKER_CONFIG (absent keys: the defaults)."""
        return cls(**{k: config[k] for k in cls.__dataclass_fields__ if config.get(k) is not None})


def apply(adapter: Any, limits: HttpLimits) -> None:
    """Bound an ``AsgiAdapter``'s connections: h11's head size, the protocol class wrapped.

    A ``StreamAdapter`` (no ``protocol_class``) is left as it is; an ``AppSet``'s adapters
    each get the limits.
    """
    for one in getattr(adapter, "adapters", ()):
        apply(one, limits)
    if not hasattr(adapter, "protocol_class"):
        return
    config = adapter.config
    if "h11_max_incomplete_event_size" in inspect.signature(type(config)).parameters:
        config.h11_max_incomplete_event_size = limits.max_header_size  # uvicorn >= 0.20
    adapter.protocol_class = guarded(adapter.protocol_class, limits)


def guarded(protocol_class: type[asyncio.Protocol], limits: HttpLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's ``protocol_class`` (httptools or h11) that enforces ``limits``
    on each connection (worker/limited.py; its deadlines checked by worker/sweep.py)."""
    return limited(protocol_class, limits)
