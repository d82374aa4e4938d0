"""Recycling under load: how long a recycle takes and how many requests it loses (issue 13).

Starts sockserve on loopback with ``--max-requests N`` (and 2 workers), runs a bounded
load of fresh connections (``Connection: close``) against a 50 ms handler, then prints
the recycles the master logged (successor listening time, old worker gone time) and
the load's outcome.  Every request counts: a reset, an EOF or a non-200 is a loss.

    .venv/bin/python bench/recycle.py [--requests 400] [--max-requests 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from tests.integration.conftest import free_port, wait_for  # noqa: E402
from tests.loadclient import Load  # noqa: E402

RECYCLED = re.compile(r"recycled \((\w+)\): successor \d+ listened after ([\d.]+)s, .* after ([\d.]+)s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--max-requests", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        run(args, log)


def run(args: argparse.Namespace, log: Any) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sockserve", "tests.apps.guarded:app", "--workers", "2", "--bind",
         f"127.0.0.1:{port}", "--max-requests", str(args.max_requests), "--log-target", "stderr"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=log, stdin=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: "ready:" in Path(log.name).read_text(), 30), "sockserve did not start"
        started = time.monotonic()
        with Load(port, threads=args.threads, max_requests=args.requests, seconds=120, path="/pause") as load:
            wait_for(lambda: len(load.result.outcomes) >= args.requests, 120, 0.1)
        took = time.monotonic() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    found = RECYCLED.findall(Path(log.name).read_text())
    listen = [float(f[1]) for f in found]
    gone = [float(f[2]) for f in found]
    print(f"{load.result.summary()} in {took:.1f}s; lost {len(load.result.failed)}")
    if found:
        print(f"{len(found)} recycles; successor listening after median {statistics.median(listen):.2f}s "
              f"(max {max(listen):.2f}s); old worker gone after median {statistics.median(gone):.2f}s "
              f"(max {max(gone):.2f}s)")


if __name__ == "__main__":
    main()
