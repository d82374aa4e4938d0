"""systemd's edge: listen fds (socket activation), sd_notify, inetd mode (Accept=yes).

The pieces live in ``listenfds``, ``notify`` and ``logs``; this module only
re-exports them.
"""

from __future__ import annotations

from ..logs import EVENT_MESSAGE_IDS, event_fields, journal_fields, log_event, setup_logging
from .listenfds import InheritedSocket, ListenFdsError, listen_fds, parse_listen_env
from .notify import Notifier, extend_timeout_line, monotonic_usec, reloading_lines, scrub_env

__all__ = [
    "EVENT_MESSAGE_IDS",
    "InheritedSocket",
    "ListenFdsError",
    "Notifier",
    "event_fields",
    "extend_timeout_line",
    "journal_fields",
    "listen_fds",
    "log_event",
    "monotonic_usec",
    "parse_listen_env",
    "reloading_lines",
    "scrub_env",
    "setup_logging",
]
