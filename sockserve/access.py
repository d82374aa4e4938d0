"""Access log lines and their journal fields, from one request's facts.  Pure: no I/O.

The line is ``str.format`` over ``ACCESS_FIELDS`` (gunicorn's ``access_log_format``
with names instead of ``%(h)s`` letters); the default is settings.ACCESS_LOG_FORMAT:
``127.0.0.1:50000 - "GET /path?q=1 HTTP/1.1" 200 12 0.4ms``.  Under journald
the same facts travel as fields (``journal_fields``), named as systemd's and
CGI's conventions name them: REQUEST_METHOD, REQUEST_PATH, QUERY_STRING,
HTTP_STATUS, RESPONSE_BYTES, DURATION_US, REMOTE_ADDR.
"""

from __future__ import annotations

from typing import Any

ACCESS_FIELDS = ("client", "method", "path", "query", "http_version", "status", "bytes",
                 "duration_ms", "duration_us", "worker_id")

# field of the line -> journal field name
JOURNAL_NAMES = {"client": "REMOTE_ADDR", "method": "REQUEST_METHOD", "path": "REQUEST_PATH",
                 "query": "QUERY_STRING", "http_version": "HTTP_VERSION", "status": "HTTP_STATUS",
                 "bytes": "RESPONSE_BYTES", "duration_us": "DURATION_US"}

SAMPLE = {"client": "127.0.0.1:50000", "method": "GET", "path": "/", "query": "", "http_version": "1.1",
          "status": 200, "bytes": 0, "duration_ms": 0.0, "duration_us": 0, "worker_id": 1}


def request_facts(scope: dict[str, Any], status: int, sent: int, duration_us: int,
                  worker_id: int | None) -> dict[str, Any]:
    """The ``ACCESS_FIELDS`` of one finished ASGI HTTP request.

    ``path`` is the full path with the query string (as uvicorn's access log
    prints it; uvicorn >= 0.26 puts root_path in ``path`` itself, older ones
    do not); ``client`` is ``host:port`` after proxy headers were applied.
    """
    client = scope.get("client")
    query = scope.get("query_string", b"").decode("latin-1")
    root, path = scope.get("root_path", ""), scope.get("path", "")
    path = path if path.startswith(root) else root + path
    return {"client": f"{client[0]}:{client[1]}" if client else "-",
            "method": scope.get("method", "-"), "path": f"{path}?{query}" if query else path,
            "query": query, "http_version": scope.get("http_version", "1.1"), "status": status,
            "bytes": sent, "duration_ms": duration_us / 1000, "duration_us": duration_us,
            "worker_id": worker_id}


def format_access_line(fmt: str, facts: dict[str, Any] | None = None) -> str:
    """``fmt`` filled with ``facts`` (default: a sample; raises KeyError/ValueError if bad)."""
    return fmt.format_map(SAMPLE if facts is None else facts)


def journal_fields(facts: dict[str, Any]) -> dict[str, Any]:
    """The journal fields of an access record (WORKER_ID comes from the worker's handler)."""
    fields = {JOURNAL_NAMES[k]: v for k, v in facts.items() if k in JOURNAL_NAMES}
    fields["SOCKSERVE_EVENT"] = "access"
    return fields
