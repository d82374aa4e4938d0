"""Side by side: a few servers up at once, short wrk rounds interleaved, one load shape.

    .venv/bin/python bench/ab.py --only "sockserve rr" --only "sockserve shared" \
        --only "uvicorn --workers" --load "keep-alive c50" --rounds 5 --seconds 3

For a question run.py answers too slowly on a shared box: every server is started
once (2 workers) and stays up, so each round measures all of them within seconds of
each other; the load average is printed per round.  ``"sockserve rr|PYTHONPATH=/tmp/base"``
runs another checkout's sockserve beside this one: run ab.py from a directory without a
``sockserve`` package then (workers start as ``python -m sockserve.worker``, which puts the
current directory first on ``sys.path``).  Prints per server: req/s median
(min-max), the ratio to the first server (median of per-round ratios), master and
per-worker CPU µs per request, and the per-worker split.  Loopback only; every server
is stopped by PID at the end, also on error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

import procstats
import sessions
import wrkload
from run import LOADS
from servers import all_specs, become_subreaper


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="interleaved side-by-side wrk rounds (loopback only)")
    parser.add_argument("--only", action="append", required=True,
                        help="a server whose name contains this (repeatable; the first is the reference); "
                        "'NAME|K=V,K=V' adds environment to that one (an A/B of one server)")
    parser.add_argument("--load", default="close c50", choices=[lo.name for lo in LOADS])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    return parser.parse_args(argv)


def _pick(only: list[str]):
    specs = all_specs()
    chosen = []
    for item in only:
        want, _, env = item.partition("|")
        match = [s for s in specs if s.name == want] or [s for s in specs if want in s.name]
        if not match or match[0].missing:
            sys.exit(f"ab: no runnable server matches {want!r}")
        spec = match[0]
        if env:
            extra = dict(kv.split("=", 1) for kv in env.split(","))
            label = env.replace("/", "_")
            spec = dataclasses.replace(spec, name=f"{spec.name} [{label}]", env={**spec.env, **extra})
        chosen.append(spec)
    return chosen


def _cpu(pids: list[int]) -> list[float]:
    return [procstats.cpu_us(p) or 0.0 for p in pids]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    become_subreaper()
    load = next(lo for lo in LOADS if lo.name == args.load)
    workdir = Path(tempfile.mkdtemp(prefix="sockserve-ab-"))
    servers = []
    try:
        for spec in _pick(args.only):
            server, _ = sessions._boot(spec, 2, workdir)
            servers.append(server)
            sessions.lifecycle.wait_workers(server.pid, 2, 10.0)
        rows: dict[str, list[tuple[float, float, list[float], dict[int, int]]]] = {}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}: load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
            for server in servers:
                url = f"http://127.0.0.1:{server.port}/"
                pids = [server.pid, *procstats.workers(server.pid)]
                before = _cpu(pids)
                res = wrkload.run(url, load, args.seconds)
                used = [(b - a) / max(1, res.requests) for a, b in zip(before, _cpu(pids), strict=True)]
                rows.setdefault(server.spec.name, []).append((res.rps, used[0], used[1:], res.pids))
                print(f"  {server.spec.name}: {res.rps:.0f} req/s, errors {res.error_total}", file=sys.stderr)
        _report(args, load.name, rows)
    finally:
        for server in servers:
            server.stop()
    return 0


def _report(args: argparse.Namespace, load: str, rows) -> None:
    names = list(rows)
    ref = [r[0] for r in rows[names[0]]]
    print(f"\n{load}, {args.rounds} rounds x {args.seconds:.0f} s, load average now "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| server | req/s median (min–max) | × first (per-round median) | master µs/req | "
          "workers µs/req | split % |")
    print("|---|---|---|---|---|---|")
    for name in names:
        rps = [r[0] for r in rows[name]]
        ratio = statistics.median(a / b for a, b in zip(rps, ref, strict=True) if b)
        master = statistics.median(r[1] for r in rows[name])
        workers = "/".join(f"{statistics.median(r[2][i] for r in rows[name] if len(r[2]) > i):.1f}"
                           for i in range(min(len(r[2]) for r in rows[name])))
        counts: dict[int, int] = {}
        for r in rows[name]:
            for pid, n in r[3].items():
                counts[pid] = counts.get(pid, 0) + n
        total = sum(counts.values()) or 1
        split = "/".join(f"{100 * n / total:.0f}" for n in sorted(counts.values(), reverse=True))
        print(f"| {name} | {statistics.median(rps):.0f} ({min(rps):.0f}–{max(rps):.0f}) | {ratio:.2f}× | "
              f"{master:.1f} | {workers} | {split} |")


if __name__ == "__main__":
    sys.exit(main())
