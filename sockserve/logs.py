"""Logging for master and workers: journald fields, or ``<N>``-prefixed lines.

Structured data rides on log records as upper-case attributes (``extra=``):
python-systemd's ``JournalHandler`` sends every record attribute as a journal
field, so ``SOCKSERVE_EVENT``, ``WORKER_ID``, ``MESSAGE_ID``... arrive as-is.
On stderr the same records become ``<6>sockserve[worker 3]: message`` lines
(sd-daemon(3) priority prefixes, which journald understands on a stream); on
a terminal ``2026-11-30 13:56:03 INFO sockserve[worker 3]: message``
(time and level name, as uvicorn and gunicorn print them).  ``log_config``
(``--log-config FILE``: JSON/TOML for ``dictConfig``, else INI for
``fileConfig``, as uvicorn's ``--log-config``) is applied last.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import tomllib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

LOGGER_NAME = "sockserve"
IDENTIFIER = "sockserve"

# journalctl MESSAGE_ID=<id> finds every occurrence of an event; fixed forever.
EVENT_MESSAGE_IDS = {
    "worker_spawn": "ca40d353b201470da6a1105b9d87d24b",
    "worker_online": "cf29406082f047b5b98cc47e4dd610a7",
    "worker_listening": "64c13df47f6f49508469d8f25115c50f",
    "worker_exit": "8aa5a460df4147f1bc35e233bbc65837",
    "worker_boot_failure": "9184664a4e8649c2bc95f60a539a52f2",
    "reload_start": "3494c2c0a306406596d9d59a77e4f577",
    "reload_done": "723fdcf99c024c2486684bc2b4ecff23",
    "reload_failed": "b2b4c6f51cbe4fa3807b38bf89e4eb90",
    "ready": "5911f7d58e6f41f592dfeacd45863062",
    "stopping": "a966e3c0bf0c487da62f2297c8275611",
}

# log_event keyword -> journal field
FIELD_NAMES = {"worker_id": "WORKER_ID", "pid": "WORKER_PID", "generation": "GENERATION",
               "listener": "LISTENER"}

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def syslog_priority(levelno: int) -> int:
    """Python level -> syslog priority (7 debug, 6 info, 4 warning, 3 err, 2 crit)."""
    for limit, priority in ((logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4),
                            (logging.ERROR, 3), (logging.CRITICAL, 2)):
        if levelno <= limit:
            return priority
    return 1


def event_fields(event: str, **fields: Any) -> dict[str, Any]:
    """The ``extra`` dict for ``event``: SOCKSERVE_EVENT, MESSAGE_ID and upper-case fields."""
    extra: dict[str, Any] = {"SOCKSERVE_EVENT": event}
    if event in EVENT_MESSAGE_IDS:
        extra["MESSAGE_ID"] = uuid.UUID(EVENT_MESSAGE_IDS[event])
    for key, value in fields.items():
        if value is not None:
            extra[FIELD_NAMES.get(key, key.upper())] = value
    return extra


def log_event(logger: logging.Logger, level: int, event: str, message: str, **fields: Any) -> None:
    """Log ``message`` with the journal fields of ``event`` and ``fields``."""
    logger.log(level, message, extra=event_fields(event, **fields))


def journal_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured (upper-case) fields a record carries, as the journal receives them."""
    return {k: v for k, v in vars(record).items() if k.isupper() and k.replace("_", "").isalnum()}


class _DefaultFields(logging.Filter):
    """Adds fields (e.g. this worker's WORKER_ID) to records that lack them."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        super().__init__()
        self.defaults = dict(defaults)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.defaults.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class PrefixFormatter(logging.Formatter):
    """``<6>sockserve[worker 3]: message``, every line prefixed.

    ``priority_prefix=False`` (a terminal): ``2026-11-30 13:56:03 INFO
    sockserve[worker 3]: message`` on the first line, the tag on the others.
    """

    def __init__(self, worker_id: int | None, priority_prefix: bool = True) -> None:
        super().__init__("%(message)s", datefmt="%Y-%m-%d %H:%M:%S")
        self.tag = f"{IDENTIFIER}[worker {worker_id}]" if worker_id is not None else IDENTIFIER
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        lines = super().format(record).splitlines() or [""]
        if self.priority_prefix:
            prefix = f"<{syslog_priority(record.levelno)}>"
            return "\n".join(f"{prefix}{self.tag}: {line}" for line in lines)
        head = f"{self.formatTime(record, self.datefmt)} {record.levelname} {self.tag}: {lines[0]}"
        return "\n".join([head, *(f"{self.tag}: {line}" for line in lines[1:])])


def stderr_is_journal(environ: Mapping[str, str] = os.environ, fd: int = 2) -> bool:
    """True when ``fd`` is the stream systemd connected to journald (JOURNAL_STREAM)."""
    dev, sep, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def journal_available() -> bool:
    try:
        from systemd import journal  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_target(target: str, environ: Mapping[str, str] = os.environ) -> str:
    """``journal`` or ``stderr`` for ``auto|journal|stderr``."""
    if target == "auto":
        return "journal" if stderr_is_journal(environ) and journal_available() else "stderr"
    if target == "journal" and not journal_available():
        return "stderr"
    return target


def make_journal_handler(worker_id: int | None = None,
                         sender_function: Callable[..., Any] | None = None) -> logging.Handler:
    """python-systemd's JournalHandler, tagged ``sockserve`` (and with WORKER_ID in workers)."""
    from systemd import journal

    kwargs: dict[str, Any] = {"SYSLOG_IDENTIFIER": IDENTIFIER}
    if sender_function is not None:
        kwargs["sender_function"] = sender_function
    handler = journal.JournalHandler(**kwargs)
    handler.addFilter(_DefaultFields(_worker_defaults(worker_id)))
    return handler


def make_stderr_handler(worker_id: int | None = None, stream: Any = None) -> logging.Handler:
    """A stream handler writing ``<N>``-prefixed lines (no prefix on a terminal)."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    isatty = getattr(stream, "isatty", lambda: False)()
    handler.setFormatter(PrefixFormatter(worker_id, priority_prefix=not isatty))
    handler.addFilter(_DefaultFields(_worker_defaults(worker_id)))
    return handler


def _worker_defaults(worker_id: int | None) -> dict[str, Any]:
    return {} if worker_id is None else {"WORKER_ID": worker_id, "WORKER_PID": os.getpid()}


def setup_logging(target: str, level: str, worker_id: int | None = None,
                  log_config: str | None = None) -> None:
    """Configure the ``sockserve`` logger for ``target`` (auto|journal|stderr), then ``log_config``.

    Raises ``LogConfigError`` (one line) when ``log_config`` cannot be applied.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    resolved = resolve_target(target)
    if resolved == "journal":
        logger.addHandler(make_journal_handler(worker_id))
    else:
        logger.addHandler(make_stderr_handler(worker_id))
    logger.setLevel(LEVELS.get(level, logging.INFO))
    logger.propagate = False
    if target == "journal" and resolved != "journal":
        logger.warning("log target journal: python-systemd is not installed; logging to stderr")
    if log_config:
        apply_log_config(log_config)


class LogConfigError(ValueError):
    """A --log-config file that cannot be read or applied; ``str()`` is one line."""


def apply_log_config(path: str) -> None:
    """Apply ``path``: ``.json``/``.toml`` through ``dictConfig``, anything else ``fileConfig`` (INI).

    Loggers sockserve already made stay enabled unless the file says
    ``disable_existing_loggers``.  The access log is the ``sockserve.access``
    logger; app errors are on ``uvicorn.error``.
    """
    try:
        if path.endswith((".json", ".toml")):
            with open(path, "rb") as f:
                data = json.load(f) if path.endswith(".json") else tomllib.load(f)
            if not isinstance(data, dict):
                raise ValueError("the file must hold a dictConfig mapping")
            data.setdefault("version", 1)
            data.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(data)
        else:
            open(path, "rb").close()  # fileConfig reports a missing file as a KeyError
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except OSError as exc:
        raise LogConfigError(f"log_config {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # json/toml/configparser/dictConfig errors
        text = " ".join(str(exc).split())
        raise LogConfigError(f"log_config {path}: {type(exc).__name__}: {text}") from None
