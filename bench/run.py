"""The benchmark: sockserve rr/shared/reuseport vs Node cluster, uvicorn and gunicorn.

    .venv/bin/python bench/run.py            # full run (~12 min), 3 runs per case
    .venv/bin/python bench/run.py --quick    # smoke run (< 2 min), 1 run per case
    .venv/bin/python bench/run.py --only rr --only uvicorn --out bench/RESULTS.md

Every server runs on 127.0.0.1 (a fresh port each start) and is stopped by PID,
with its descendants, when its session ends, also on error.  Benchmarks, not tests:
the targets are reported as met / missed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import handoff
import machine
import report
import sessions
import targets
from results import Results
from servers import ServerSpec, all_specs, become_subreaper
from wrkload import Load

LOADS = [Load("keep-alive c50", 50), Load("close c50", 50, close=True), Load("keep-alive c200", 200)]
RELOAD_LOADS = [Load("close c50", 50, close=True), Load("keep-alive c50", 50)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sockserve benchmark against its peers (loopback only)")
    parser.add_argument("--quick", action="store_true", help="1 run, short cases: a smoke run")
    parser.add_argument("--runs", type=int, help="runs per case (default 3; --quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per load case (default 5; --quick 2)")
    parser.add_argument("--workers-big", type=int, default=4, help="workers for start-up and reload")
    parser.add_argument("--only", action="append", default=[],
                        help="run only servers whose name contains this (repeatable)")
    parser.add_argument("--no-handoff", action="store_true", help="skip the hand-off micro-benchmark")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) to this file")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.warmup = 1.0
    args.reload_seconds = 3.0 if args.quick else 6.0
    return args


def select(specs: list[ServerSpec], only: list[str], res: Results) -> list[ServerSpec]:
    chosen = [s for s in specs if not only or any(o in s.name for o in only)]
    res.servers = [s.name for s in chosen]
    for spec in chosen:
        if spec.missing:
            res.missing[spec.name] = spec.missing
            print(f"skip {spec.name}: {spec.missing}", file=sys.stderr)
    return [s for s in chosen if not s.missing]


def _attempt(what: str, spec: ServerSpec, res: Results, call, *args) -> None:
    started = time.monotonic()
    try:
        call(spec, *args, res)
    except (sessions.BenchError, RuntimeError, OSError) as exc:
        res.failures[spec.name].append(f"{what}: {exc}")
        print(f"  {spec.name}: {what} failed: {exc}", file=sys.stderr)
        return
    print(f"  {spec.name}: {what} done in {time.monotonic() - started:.1f} s", file=sys.stderr)


def measure(args: argparse.Namespace, specs: list[ServerSpec], res: Results, workdir: Path) -> None:
    for run in range(1, args.runs + 1):
        print(f"load run {run}/{args.runs}", file=sys.stderr)
        for spec in specs:  # servers interleaved, so a drift of the machine hits all alike
            _attempt("load", spec, res, sessions.load_session, LOADS, args.seconds, args.warmup, workdir)
    for run in range(1, args.runs + 1):
        print(f"start-up/reload run {run}/{args.runs}", file=sys.stderr)
        for spec in specs:
            _attempt("start-up/reload", spec, res, sessions.lifecycle_session, args.workers_big,
                     RELOAD_LOADS, args.reload_seconds, workdir)
    if not args.no_handoff:
        print("hand-off micro-benchmark", file=sys.stderr)
        variants = (("1", "C path, forked workers (master-only CPU)"),
                    ("0", "Python path, forked workers (master-only CPU)"))
        for _ in range(args.runs):
            for native, variant in variants:  # native.py reads SOCKSERVE_NATIVE at each Dispatcher
                os.environ["SOCKSERVE_NATIVE"] = native
                res.handoff[variant].append(handoff.run(seconds=2.0 if args.quick else 3.0, fork=True))
        os.environ.pop("SOCKSERVE_NATIVE", None)


def render(args: argparse.Namespace, res: Results) -> str:
    runs = f"{args.runs} run(s) per case, {args.seconds:.0f} s each"
    parts = ["# sockserve benchmark", "", machine.describe(getattr(args, "load_at_start", None)),
             f"- {runs}; wrk -t2, 2 workers per server",
             "", "## Targets", "", targets.targets_table(res, args.workers_big), "",
             "## Load (2 workers)", ""]
    for load in LOADS:
        by_server = {name: res.loads[load.name].get(name, []) for name in res.servers}
        parts += [report.load_table(load.name, by_server, res.master_us[load.name], res.missing), ""]
    parts += ["## Start-up and memory (2 workers)", "",
              report.process_table(res.servers, res.first_answer, res.rss_mib), "",
              f"## Start-up and reload under load ({args.workers_big} workers, "
              f"load {args.reload_seconds:.0f} s, signal 1 s in)", "",
              report.lifecycle_table(res.servers, res.startup, res.reloads, [lo.name for lo in RELOAD_LOADS]),
              "", "## Hand-off micro-benchmark (bench/handoff.py)", "", report.handoff_table(res.handoff), ""]
    notes = [f"- {name}: n/a: {why}" for name, why in res.missing.items()]
    notes += [f"- {name}: {failure}" for name, failed in res.failures.items() for failure in failed]
    if notes:
        parts += ["## Not measured / failures", "", *notes, ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_at_start = os.getloadavg()[0]
    become_subreaper()
    # SIGTERM unwinds like an exception, so every session's finally stops its server
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    res = Results()
    specs = select(all_specs(), args.only, res)
    workdir = Path(tempfile.mkdtemp(prefix="sockserve-bench-"))
    started = time.monotonic()
    try:
        measure(args, specs, res, workdir)
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
    text = render(args, res)
    print(text)
    if args.out:
        args.out.write_text(text)
    print(f"total {time.monotonic() - started:.0f} s; server logs in {workdir}", file=sys.stderr)
    if not res.failures:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
