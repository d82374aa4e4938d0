"""The access log: an ASGI middleware timing each HTTP request and logging one record.

It sits inside uvicorn's ProxyHeadersMiddleware, so ``client`` is the
forwarded address when proxy headers are trusted.  The line is
``access_log_format`` over access.ACCESS_FIELDS on the ``sockserve.access``
logger (the worker's handlers: a stderr line, or journald with the fields of
access.journal_fields).  Not installed at all when the access log is off.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..access import journal_fields, request_facts

log = logging.getLogger("sockserve.access")


class AccessLogMiddleware:
    """Wraps an ASGI3 app; logs ``fmt`` after each HTTP request (status 500 if it raised first)."""

    def __init__(self, app: Any, fmt: str, worker_id: int | None) -> None:
        self.app = app
        self.fmt = fmt
        self.worker_id = worker_id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter_ns()
        seen = {"status": 500, "bytes": 0}

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                seen["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self._log(scope, seen, (time.perf_counter_ns() - start) // 1000)

    def _log(self, scope: dict[str, Any], seen: dict[str, int], duration_us: int) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        facts = request_facts(scope, seen["status"], seen["bytes"], duration_us, self.worker_id)
        try:
            line = self.fmt.format_map(facts)
        except (KeyError, ValueError, IndexError, TypeError) as exc:  # validated at startup
            line = f"{facts} (access_log_format: {exc!r})"
        # makeRecord + handle: logging.info would also walk the stack for the caller (findCaller),
        # a fifth of the cost of a record, for a file and line that are always this one
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, line, None, None,
                                  extra=journal_fields(facts)))
