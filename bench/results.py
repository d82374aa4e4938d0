"""The figures one benchmark run collects, per server (no I/O here)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from wrkload import WrkResult


@dataclass
class Startup:
    """From spawn: seconds to the first 200 answer and to READY=1 (None: never seen)."""

    first_s: float | None
    ready_s: float | None


@dataclass
class Reload:
    """One reload under load: seconds until every old worker is gone and the new ones run."""

    seconds: float | None
    ready_s: float | None  # READY=1 after the signal, when the server notifies
    load: WrkResult


def _nested() -> defaultdict[str, defaultdict[str, list]]:
    return defaultdict(lambda: defaultdict(list))


@dataclass
class Results:
    servers: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # server -> why it did not run
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    loads: defaultdict[str, defaultdict[str, list[WrkResult]]] = field(default_factory=_nested)
    master_us: defaultdict[str, defaultdict[str, list[float]]] = field(default_factory=_nested)
    first_answer: defaultdict[str, list[float | None]] = field(default_factory=lambda: defaultdict(list))
    rss_mib: defaultdict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list))  # (per worker, master)
    startup: defaultdict[str, list[Startup]] = field(default_factory=lambda: defaultdict(list))
    reloads: defaultdict[str, defaultdict[str, list[Reload]]] = field(default_factory=_nested)
    handoff: defaultdict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
