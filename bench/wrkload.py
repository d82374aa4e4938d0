"""Runs wrk with count_pids.lua and parses its one-line JSON summary."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).with_name("count_pids.lua")


@dataclass(frozen=True)
class Load:
    """One wrk load shape."""

    name: str
    connections: int
    close: bool = False  # send "Connection: close" on every request
    threads: int = 2


@dataclass
class WrkResult:
    """What one wrk run measured; latencies in µs."""

    requests: int
    duration_us: int
    p50_us: int
    p99_us: int
    errors: dict[str, int]
    pids: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


def command(url: str, load: Load, seconds: float) -> list[str]:
    """The wrk command line for ``load`` against ``url`` for ``seconds``."""
    cmd = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{max(1, round(seconds))}s",
           "--latency", "--timeout", "2s", "-s", str(SCRIPT)]
    if load.close:
        cmd += ["-H", "Connection: close"]
    return cmd + [url]


def start(url: str, load: Load, seconds: float) -> subprocess.Popen[str]:
    """Start wrk in the background; finish with ``finish``."""
    return subprocess.Popen(command(url, load, seconds), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], seconds: float) -> WrkResult:
    """Wait (bounded) for a wrk started by ``start`` and parse its output."""
    try:
        out, _ = proc.communicate(timeout=seconds + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError("wrk did not finish in time") from None
    return parse(out)


def run(url: str, load: Load, seconds: float) -> WrkResult:
    """Run wrk in the foreground and return its result."""
    return finish(start(url, load, seconds), seconds)


def parse(output: str) -> WrkResult:
    """The WrkResult in wrk's output; RuntimeError naming the output if absent."""
    for line in output.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line[len("BENCHJSON "):])
            errors = {k: data[k] for k in ("connect", "read", "write", "timeout", "status")}
            pids = {int(p): n for p, n in data["pids"].items()}
            return WrkResult(data["requests"], data["duration_us"], data["p50_us"],
                             data["p99_us"], errors, pids)
    raise RuntimeError(f"wrk printed no summary: {output.strip()[-200:]!r}")
