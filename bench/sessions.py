"""One server's session: start it, measure, stop it by PID (always)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import lifecycle
import procstats
import wrkload
from results import Reload, Results, Startup
from servers import Server, ServerSpec
from wrkload import Load

BOOT_TIMEOUT = 20.0  # seconds a server may take to answer at all
RELOAD_TIMEOUT = 20.0  # seconds a reload may take before it counts as not finished


class BenchError(Exception):
    """A server could not be measured; the message is one line."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _boot(spec: ServerSpec, workers: int, workdir: Path, notify: str | None = None) -> tuple[Server, float]:
    log = workdir / f"{spec.name.replace(' ', '_')}.log"
    server = Server(spec, free_port(), workers, log, notify)
    first = lifecycle.wait_first_answer(server.port, server.started, BOOT_TIMEOUT)
    if first is None:
        server.stop()
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
        raise BenchError(f"{spec.name}: no answer within {BOOT_TIMEOUT:.0f} s; log: {tail[0][:160]}")
    return server, first


def load_session(spec: ServerSpec, loads: list[Load], seconds: float, warmup: float,
                 workdir: Path, out: Results) -> None:
    """2 workers: each load for ``seconds`` (after a warm-up), master CPU, RSS, first answer."""
    server, first = _boot(spec, 2, workdir)
    try:
        out.first_answer[spec.name].append(first)
        lifecycle.wait_workers(server.pid, 2, 10.0)
        url = f"http://127.0.0.1:{server.port}/"
        wrkload.run(url, loads[0], warmup)
        for load in loads:
            cpu0 = procstats.cpu_us(server.pid) or 0.0
            result = wrkload.run(url, load, seconds)
            cpu1 = procstats.cpu_us(server.pid) or 0.0
            out.loads[load.name][spec.name].append(result)
            out.master_us[load.name][spec.name].append((cpu1 - cpu0) / max(1, result.requests))
        workers = [procstats.rss_kib(p) or 0 for p in procstats.workers(server.pid)]
        master = procstats.rss_kib(server.pid) or 0
        if workers:
            out.rss_mib[spec.name].append((sum(workers) / len(workers) / 1024, master / 1024))
    finally:
        server.stop()


def lifecycle_session(spec: ServerSpec, workers: int, reload_loads: list[Load], seconds: float,
                      workdir: Path, out: Results) -> None:
    """``workers`` workers: time to first answer and READY; then one reload under each load."""
    listener = lifecycle.NotifyListener(workdir / f"notify-{os.getpid()}-{time.monotonic_ns()}.sock")
    try:
        server, first = _boot(spec, workers, workdir, listener.path)
        try:
            ready = lifecycle.wait_ready(listener, server.started, BOOT_TIMEOUT if spec.notifies else 0.0)
            out.startup[spec.name].append(Startup(first, ready))
            if spec.reload_signal is None:
                return
            for load in reload_loads:
                out.reloads[spec.name][load.name].append(_reload(server, load, seconds, listener))
        finally:
            server.stop()
    finally:
        listener.close()


def _reload(server: Server, load: Load, seconds: float, listener: lifecycle.NotifyListener) -> Reload:
    """Signal a reload 1 s into a ``seconds`` load; wait until the old workers are replaced."""
    old = lifecycle.wait_workers(server.pid, server.workers, 10.0)
    proc = wrkload.start(f"http://127.0.0.1:{server.port}/", load, seconds)
    try:
        time.sleep(1.0)
        signalled = time.monotonic()
        os.kill(server.pid, server.spec.reload_signal)
        took = lifecycle.wait_replaced(server.pid, old, server.workers, signalled, RELOAD_TIMEOUT)
        ready = listener.first("READY=1", after=signalled)
    finally:
        result = wrkload.finish(proc, seconds)
    return Reload(took, None if ready is None else ready - signalled, result)
