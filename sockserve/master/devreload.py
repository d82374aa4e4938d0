"""``--reload``: a rolling reload whenever watched files change (development).

uvicorn's and Granian's ``--reload`` restart their server; sockserve starts a new
generation through the same rolling path as ``systemctl reload`` (the old
workers serve until the new ones listen), so requests keep being answered
while you edit.  Files are watched with ``watchfiles`` (the watcher uvicorn
uses) in the master's event loop.  Patterns as uvicorn's: ``--reload-include``
(default ``*.py``) and ``--reload-exclude`` (default ``.*``, ``.py[cod]``,
``.sw.*``, ``~*``), matched against the file name and every directory below the
watched one.  Refused with socket activation (guards.check_listeners).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..systemd import log_event

log = logging.getLogger("sockserve.master")
DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")
STEP_MS = 50  # watchfiles yields once no new change came for this long
DEBOUNCE_MS = 1600  # ... or after this long of continuous changes (watchfiles' default)


class PatternFilter:
    """``(change, path) -> bool``: watchfiles' ``watch_filter`` with uvicorn's include/exclude."""

    def __init__(self, dirs: list[Path], includes: tuple[str, ...], excludes: tuple[str, ...]) -> None:
        self.dirs = dirs
        self.includes = includes or DEFAULT_INCLUDES
        self.excludes = excludes or DEFAULT_EXCLUDES

    def __call__(self, change: Any, path: str) -> bool:
        p = Path(path)
        if not any(fnmatch.fnmatch(p.name, pattern) for pattern in self.includes):
            return False
        parts = [p.name, *self._dirs_below_root(p)]
        return not any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in self.excludes)

    def _dirs_below_root(self, p: Path) -> list[str]:
        for root in self.dirs:
            with contextlib.suppress(ValueError):
                return list(p.parent.relative_to(root).parts)
        return []


class DevReload:
    """Watches ``config.reload_dirs`` (default: the current directory) and calls ``reload()``."""

    def __init__(self, config: Config, reload: Callable[[], Awaitable[tuple[bool, str]]],
                 loop: asyncio.AbstractEventLoop) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ConfigError("reload: needs the watchfiles package (pip install 'sockserve[reload]')") \
                from None
        self._awatch = watchfiles.awatch
        self.dirs = [Path(d).resolve() for d in (config.reload_dirs or (os.getcwd(),))]
        for d in self.dirs:
            if not d.is_dir():
                raise ConfigError(f"reload_dirs: {str(d)!r} is not a directory")
        self.filter = PatternFilter(self.dirs, config.reload_includes, config.reload_excludes)
        self.reload = reload
        self.loop = loop
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self.loop.create_task(self._watch())
        where = ", ".join(map(str, self.dirs))
        log_event(log, logging.INFO, "reload_watch", f"reload: watching {where}")

    async def _watch(self) -> None:
        async for changes in self._awatch(*self.dirs, watch_filter=self.filter, stop_event=self._stop,
                                          step=STEP_MS, debounce=DEBOUNCE_MS):
            names = sorted({os.path.relpath(path) for _, path in changes})
            log_event(log, logging.INFO, "reload_files", f"reload: {', '.join(names[:5])} changed")
            ok, message = await self.reload()
            if not ok:  # e.g. a syntax error: the old generation keeps serving
                log_event(log, logging.WARNING, "reload_kept", f"reload: {message}")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
