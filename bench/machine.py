"""What the benchmark ran on: date, machine, versions."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _command_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(load_at_start: float | None = None) -> str:
    """A markdown bullet list of date, machine and versions; the 1-minute load average at the
    start (``load_at_start``, read by the caller before measuring) and now."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    packages = ", ".join(f"{p} {_package(p)}" for p in
                         ("sockserve", "uvicorn", "uvloop", "httptools", "gunicorn", "uvicorn-worker"))
    return "\n".join([
        f"- date: {now}",
        f"- machine: {os.cpu_count()} CPUs ({_cpu_model()}), kernel {platform.release()}, "
        f"load average {'?' if load_at_start is None else f'{load_at_start:.2f}'} at start, "
        f"{os.getloadavg()[0]:.2f} at the end (other processes on the box count too)",
        f"- python {platform.python_version()} ({sys.executable})",
        f"- {packages}",
        f"- node {_command_version(['node', '--version'])}; {_command_version(['wrk', '-v'])}",
    ])
