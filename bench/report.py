"""Markdown tables from the collected figures: medians, spreads, ratios, targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from wrkload import WrkResult

REF_NODE = "node cluster rr"
REF_UVICORN = "uvicorn --workers"
REF_SHARED = "sockserve shared"
_ERR_LETTERS = {"connect": "c", "read": "r", "write": "w", "timeout": "t", "status": "n"}


def spread(values: Sequence[float | None], fmt: str = "{:.0f}") -> str:
    """``median (min–max)``, or the one value, or ``n/a``."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    med = fmt.format(statistics.median(vals))
    if len(vals) == 1:
        return med
    return f"{med} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(value: float | None, reference: float | None) -> str:
    if not value or not reference:
        return "n/a"
    return f"{value / reference:.2f}×"


def errors_text(runs: Sequence[WrkResult]) -> str:
    """Errors summed over the runs: ``0`` or e.g. ``r12 t3`` (connect read write timeout non-2xx)."""
    total = {k: sum(r.errors[k] for r in runs) for k in _ERR_LETTERS}
    parts = [f"{_ERR_LETTERS[k]}{v}" for k, v in total.items() if v]
    return " ".join(parts) or "0"


def shares(result: WrkResult) -> list[float]:
    """Per-worker shares of the answered requests, in %, largest first."""
    total = sum(result.pids.values())
    return sorted((100 * n / total for n in result.pids.values()), reverse=True) if total else []


def split_text(runs: Sequence[WrkResult]) -> str:
    """The median per-worker split, e.g. ``51/49``, and the largest share's range."""
    per_run = [shares(r) for r in runs if r.pids]
    if not per_run:
        return "n/a"
    width = max(len(s) for s in per_run)
    med = [statistics.median(s[i] if i < len(s) else 0.0 for s in per_run) for i in range(width)]
    tops = [s[0] for s in per_run]
    return "/".join(f"{m:.0f}" for m in med) + f" (top {min(tops):.1f}–{max(tops):.1f})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load_table(case: str, by_server: dict[str, list[WrkResult]], master_us: dict[str, list[float]],
               missing: dict[str, str]) -> str:
    """One load case: req/s with spread and ratios to the peers, latency, errors, split, master CPU."""
    rps = {name: median([r.rps for r in runs]) for name, runs in by_server.items()}
    rows = []
    for name, runs in by_server.items():
        if not runs:
            rows.append([name, f"n/a: {missing.get(name, 'no run succeeded')}"] + [""] * 8)
            continue
        rows.append([name, spread([r.rps for r in runs]), ratio(rps[name], rps.get(REF_NODE)),
                     ratio(rps[name], rps.get(REF_UVICORN)), ratio(rps[name], rps.get(REF_SHARED)),
                     spread([r.p50_us / 1000 for r in runs], "{:.2f}"),
                     spread([r.p99_us / 1000 for r in runs], "{:.2f}"),
                     errors_text(runs), split_text(runs), spread(master_us.get(name, []), "{:.1f}")])
    header = ["server", "req/s median (min–max)", "× node rr", "× uvicorn", "× shared", "p50 ms", "p99 ms",
              "errors", "split % per worker", "master CPU µs/req"]
    return f"### {case}\n\n" + table(header, rows)


def process_table(names: Sequence[str], first: dict[str, list], rss: dict[str, list]) -> str:
    """Start-up with 2 workers and memory after the load cases."""
    rows = [[name, spread([f * 1000 if f is not None else None for f in first.get(name, [])]),
             spread([w for w, _ in rss.get(name, [])], "{:.1f}"),
             spread([m for _, m in rss.get(name, [])], "{:.1f}")] for name in names]
    header = ["server", "first answer ms (2 workers)", "RSS MiB per worker", "master RSS MiB"]
    return table(header, rows)


def lifecycle_table(names: Sequence[str], startup: dict, reloads: dict, load_names: Sequence[str]) -> str:
    """Start-up with more workers (first answer, READY) and each reload under load."""
    header = ["server", "first answer ms", "READY ms"]
    for load in load_names:
        header += [f"reload s ({load})", f"reload errors/requests ({load})"]
    rows = []
    for name in names:
        runs = startup.get(name, [])
        row = [name, spread([_ms(s.first_s) for s in runs]), spread([_ms(s.ready_s) for s in runs])]
        for load in load_names:
            done = reloads.get(name, {}).get(load, [])
            if not done:
                row += ["n/a", "n/a"]
                continue
            unfinished = sum(1 for r in done if r.seconds is None)
            took = spread([r.seconds for r in done], "{:.2f}")
            took += f" ({unfinished} unfinished)" if unfinished else ""
            row += [took, f"{errors_text([r.load for r in done])} / {sum(r.load.requests for r in done)}"]
        rows.append(row)
    return table(header, rows)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def handoff_table(runs: dict[str, list[dict[str, float]]]) -> str:
    """The hand-off micro-benchmark: fds/s and CPU µs per fd."""
    rows = [[variant, spread([r["fds_per_s"] for r in done]),
             spread([r["cpu_us_per_fd"] for r in done], "{:.1f}"),
             str(sum(int(r["client_failed"]) for r in done))] for variant, done in runs.items()]
    return table(["variant", "fds/s", "CPU µs per fd (this process)", "client failures"], rows)
