"""A worker's apps, one per listener key (per-listener apps, issue 15; appmap.py).

The master tells each worker ``apps``: listener key -> ``MODULE:ATTR`` (or null: the built-in
app), resolved from the ``app`` mapping and the listeners' names.  ``load_apps`` loads each
distinct app once (apps.load_adapter, interface detected per app unless ``interface`` says
otherwise).  With one app it returns that adapter, as before; with several an ``AppSet``,
which offers what the runtime and drain.py use of one adapter (``open``/``served`` summed,
``startup``/``shutdown``/drain over all) plus ``for_key(key)``: the adapter whose
``protocol_factory`` and ``ssl`` serve a connection of that listener (worker/handed.py).
A library worker's set starts empty and grows with its ``sockserve.listen()`` calls (``add``;
worker/child.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import apps

Adapter = apps.StreamAdapter | apps.AsgiAdapter


class AppsLoadError(Exception):
    """An app cannot be loaded; ``str()`` is the start's line: ``cannot load app 'M:A' ...: why``."""


def specs(config: dict[str, Any]) -> dict[str, str | None]:
    """key -> spec from the worker's config (``{}``: the one ``app`` for every key)."""
    told = config.get("apps")
    return {str(k): v for k, v in told.items()} if isinstance(told, dict) else {}


def load_apps(config: dict[str, Any], worker_id: int,
              loop: asyncio.AbstractEventLoop) -> Adapter | AppSet:
    """The adapter serving every listener, or an ``AppSet`` when listeners have different apps;
    raises AppsLoadError (the first app that cannot load, naming its listeners)."""
    by_key = specs(config)
    wanted = list(dict.fromkeys(by_key.values())) or [config.get("app")]
    interface = str(config.get("interface", "auto"))
    loaded: dict[str | None, Adapter] = {}
    for spec in wanted:
        try:
            loaded[spec] = apps.load_adapter(spec, interface, worker_id, loop, config)
        except apps.AppLoadError as exc:
            keys = [key for key, s in by_key.items() if s == spec]
            where = f" (listener {', '.join(keys)})" if len(wanted) > 1 else ""
            raise AppsLoadError(f"cannot load app '{spec}'{where}: {exc}") from exc
    if len(loaded) == 1:
        return loaded[wanted[0]]
    return AppSet({key: loaded[spec] for key, spec in by_key.items()})


class AppSet:
    """Several adapters behind one face: the runtime's counters and drain.py's ``Drainable``."""

    interface = "mixed"

    def __init__(self, by_key: dict[str, Adapter]) -> None:
        self.by_key = dict(by_key)
        self.adapters: list[Adapter] = list({id(a): a for a in by_key.values()}.values())
        self._started: set[int] = set()  # id() of the adapters whose startup ran

    @property
    def protocol_factory(self) -> Any:  # for a key-less caller
        return self.adapters[0].protocol_factory

    @property
    def ssl(self) -> Any:
        return self.adapters[0].ssl

    def add(self, key: str, adapter: Adapter, started: bool = False) -> bool:
        """Listener ``key`` is served by ``adapter`` from now on (sockserve.listen: the set grows
        with the worker's listen() calls); True if the adapter is new to the set."""
        self.by_key[key] = adapter
        if started:
            self._started.add(id(adapter))
        new = all(a is not adapter for a in self.adapters)
        if new:
            self.adapters.append(adapter)
        return new

    def remove(self, key: str) -> None:
        """Listener ``key`` is gone (a listen() the primary refused)."""
        adapter = self.by_key.pop(key, None)
        if all(a is not adapter for a in self.by_key.values()):
            self.adapters = [a for a in self.adapters if a is not adapter]

    def for_key(self, key: str | None) -> Adapter:
        """The adapter of listener ``key`` (unknown or None: the first)."""
        return self.by_key.get(key, self.adapters[0]) if key is not None else self.adapters[0]

    @property
    def open(self) -> int:
        return sum(a.open for a in self.adapters)

    @property
    def served(self) -> int:
        return sum(a.served for a in self.adapters)

    @property
    def idle_grace(self) -> float:
        return max((a.idle_grace for a in self.adapters), default=0.0)

    @property
    def tasks(self) -> set[asyncio.Task[Any]]:
        return set().union(*(a.tasks for a in self.adapters))

    def transports(self) -> list[asyncio.BaseTransport]:
        return [t for a in self.adapters for t in a.transports()]

    def begin_drain(self) -> None:
        for a in self.adapters:
            a.begin_drain()

    def close_idle(self) -> None:
        for a in self.adapters:
            a.close_idle()

    def busy(self) -> bool:
        return any(a.busy() for a in self.adapters)

    async def startup(self) -> None:
        """Each app's lifespan startup, in turn (AppStartupError: the first that fails); an app
        started already (by its listen()) is not started again."""
        for a in list(self.adapters):
            if id(a) not in self._started:
                self._started.add(id(a))
                await a.startup()

    async def shutdown(self) -> None:
        """Every app's lifespan shutdown, at once; the first error after all have run."""
        results = await asyncio.gather(*(a.shutdown() for a in self.adapters), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
