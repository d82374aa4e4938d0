"""``--metrics HOST:PORT``: the master's statistics in Prometheus text format.

A custom collector (prometheus-client's ``Collector`` protocol) turns
``master.statistics()`` into metric families on each scrape: nothing is
counted twice and nothing is added to the hand-off path, and ``sockserve
status --json`` shows the same numbers.

Served by prometheus-client's own HTTP server thread (``start_http_server``),
not in the master's event loop: no HTTP parsing of our own in the master, and
a slow scraper cannot hold up the loop.  The thread never touches the master's
objects: each scrape asks the loop for a snapshot (``run_coroutine_threadsafe``)
and waits at most ``SNAPSHOT_TIMEOUT`` (a master whose loop is stuck fails the
scrape with HTTP 500, which is what a monitor should see).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from ..config import ConfigError, parse_address
from ..systemd import log_event

log = logging.getLogger("sockserve.master")
SNAPSHOT_TIMEOUT = 5.0  # seconds a scrape waits for the loop's snapshot
PER_WORKER = (("handed", "connections handed to the worker (rr)"),
              ("accepted", "hand-offs the worker acknowledged as accepted"),
              ("rejected", "hand-offs the worker refused"),
              ("rehanded", "connections handed here after another worker refused or died"),
              ("served", "requests (connections for stream apps) the worker served"))


def families(stats: dict[str, Any]) -> Iterator[Any]:
    """Metric families for one ``statistics()`` snapshot."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    labels = ["worker", "pid", "generation", "slot"]
    for name, text in PER_WORKER:
        family = CounterMetricFamily(f"sockserve_worker_{name}", text, labels=labels)
        for w in stats["workers"]:
            family.add_metric(_worker_labels(w), w[name])
        yield family
    opened = GaugeMetricFamily("sockserve_worker_open_connections", "open connections (heartbeat)",
                               labels=labels)
    for w in stats["workers"]:
        opened.add_metric(_worker_labels(w), w["open"])
    yield opened
    states = GaugeMetricFamily("sockserve_workers", "workers by state", labels=["state"])
    for state in ("none", "online", "listening", "disconnecting"):
        states.add_metric([state], sum(1 for w in stats["workers"] if w["state"] == state))
    yield states
    yield GaugeMetricFamily("sockserve_workers_configured", "workers the serving generation should have",
                            value=stats["size"])
    yield from _tallies(stats)
    yield GaugeMetricFamily("sockserve_generation", "the serving generation", value=stats["generation"])
    yield GaugeMetricFamily("sockserve_ready", "1 while READY=1 holds (running or reloading)",
                            value=int(stats["ready"]))


def _tallies(stats: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield CounterMetricFamily("sockserve_served", "requests served by all workers, dead ones included",
                              value=stats["served"])
    for name, text in (("restarts", "workers replaced after an unrequested exit, by reason"),
                       ("recycles", "workers recycled, by reason"),
                       ("exits", "worker exits, by reason")):
        family = CounterMetricFamily(f"sockserve_worker_{name}", text, labels=["reason"])
        for reason, count in sorted(stats[name].items()):
            family.add_metric([reason], count)
        yield family
    yield CounterMetricFamily("sockserve_accept_pauses", "accept paused for lack of fds (EMFILE/ENFILE)",
                              value=stats["accept_paused"])
    yield CounterMetricFamily("sockserve_spawn_failures", "workers that could not be started",
                              value=stats["spawn_failures"])
    reloads = CounterMetricFamily("sockserve_reloads", "rolling reloads, by result", labels=["result"])
    for result in ("ok", "failed"):
        reloads.add_metric([result], stats["reloads"][result])
    yield reloads
    last = stats["reloads"]["last_ok"]
    yield GaugeMetricFamily("sockserve_reload_last_success", "1 if the last reload succeeded, 0 if it "
                            "failed (absent before the first)", value=-1 if last is None else int(last))


def _worker_labels(w: dict[str, Any]) -> list[str]:
    return [str(w["id"]), str(w["pid"]), str(w["generation"]), str(w["slot"])]


class StatisticsCollector:
    """prometheus-client collector over a ``snapshot()`` callable (thread-safe by the caller)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        yield from families(self.snapshot())


class MetricsServer:
    """The endpoint at ``address`` (HOST:PORT), serving the statistics of the master on ``loop``."""

    def __init__(self, address: str, statistics: Callable[[], dict[str, Any]],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.address = parse_address(address)
        self.statistics = statistics
        self.loop = loop
        self._server: Any = None

    def start(self) -> None:
        """Bind and serve in a daemon thread; ConfigError (exit 2) when the address cannot be bound."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatisticsCollector(self._snapshot))
        try:
            started = start_http_server(self.address.port, self.address.host, registry)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {self.address}: {exc.strerror or exc}") from None
        self._server = started[0] if isinstance(started, tuple) else None  # < 0.17 returns None
        port = self._server.server_address[1] if self._server else self.address.port
        log_event(log, logging.INFO, "metrics", f"metrics on http://{self.address.host}:{port}/metrics")

    def _snapshot(self) -> dict[str, Any]:
        """``statistics()`` taken in the loop's thread (called from the server's thread)."""

        async def take() -> dict[str, Any]:
            return self.statistics()

        return asyncio.run_coroutine_threadsafe(take(), self.loop).result(SNAPSHOT_TIMEOUT)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
