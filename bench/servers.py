"""The servers under test: how to start each on loopback, and how to stop it by PID."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import procstats

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = Path(sys.executable).parent
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class ServerSpec:
    """One server under test; ``argv``/``env`` are templates filled by ``start``."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    reload_signal: signal.Signals | None = None
    notifies: bool = False  # sends READY=1 to NOTIFY_SOCKET
    missing: str = ""  # why it cannot run here, '' if it can


def _sockserve(policy: str, *extra: str, label: str = "", native: bool = True) -> ServerSpec:
    """sockserve with ``policy``; ``native=False``: the pure-Python hand-off path (SOCKSERVE_NATIVE=0)."""
    exe = VENV_BIN / "sockserve"
    argv = (str(exe), "--workers", "{workers}", "--policy", policy, "--bind", "127.0.0.1:{port}",
            "--log-target", "stderr", *extra)
    env = {"PYTHONPATH": str(REPO)}  # this checkout's sockserve, whatever the venv installed
    missing = "" if _sockserve_ready(exe, env) else f"`{exe} --help` fails (sockserve.cli missing?)"
    name = f"sockserve {policy}{label}"
    if not native:
        env["SOCKSERVE_NATIVE"] = "0"
        name += " (python)"
    elif policy == "rr" and not missing and not _native_built(env):
        missing = "sockserve.master._native is not built (pip install -e . with a C compiler)"
    return ServerSpec(name, argv, env, reload_signal=signal.SIGHUP, notifies=True, missing=missing)


def _native_built(env: dict[str, str]) -> bool:
    check = "import sys, sockserve.master.native as n; sys.exit(0 if n.available() else 1)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, timeout=10,
                          env={**os.environ, **env})
    return done.returncode == 0


def _sockserve_ready(exe: Path, env: dict[str, str]) -> bool:
    if not exe.exists():
        return False
    try:
        done = subprocess.run([str(exe), "--help"], capture_output=True, timeout=10,
                              env={**os.environ, **env})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _node(policy: str) -> ServerSpec:
    node = shutil.which("node") or ""
    return ServerSpec(f"node cluster {policy}", (node, str(BENCH / "node_cluster.js")),
                      {"PORT": "{port}", "WORKERS": "{workers}", "NODE_CLUSTER_SCHED_POLICY": policy},
                      missing="" if node else "node not found on PATH")


def _uvicorn(access_log: bool = False) -> ServerSpec:
    logs = ("--access-log", "--log-level", "info") if access_log else \
        ("--no-access-log", "--log-level", "warning")
    argv = (str(VENV_BIN / "uvicorn"), "apps:app", "--app-dir", str(BENCH), "--workers", "{workers}",
            "--loop", "uvloop", "--http", "httptools", "--host", "127.0.0.1", "--port", "{port}", *logs)
    label = " +access-log" if access_log else ""
    return ServerSpec(f"uvicorn --workers{label}", argv, reload_signal=signal.SIGHUP)


def _gunicorn() -> ServerSpec:
    exe = VENV_BIN / "gunicorn"
    # uvicorn >= 0.30 deprecates uvicorn.workers; the worker lives in the uvicorn-worker package
    worker = "uvicorn_worker.UvicornWorker"
    missing = ""
    if not exe.exists():
        missing = "gunicorn not installed in the venv (pip install gunicorn uvicorn-worker)"
    elif importlib.util.find_spec("uvicorn_worker") is None:
        missing = "uvicorn-worker not installed in the venv (pip install uvicorn-worker)"
    argv = (str(exe), "-w", "{workers}", "-k", worker, "-b", "127.0.0.1:{port}",
            "--chdir", str(BENCH), "--log-level", "warning", "apps:app")
    return ServerSpec("gunicorn+uvicorn", argv, reload_signal=signal.SIGHUP, notifies=True,
                      missing=missing)


def _granian() -> ServerSpec:
    exe = VENV_BIN / "granian"
    argv = (str(exe), "--interface", "asgi", "--workers", "{workers}", "--loop", "uvloop", "--no-ws",
            "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "apps:app")
    missing = "" if exe.exists() else "granian not installed in the venv (pip install -e '.[bench]')"
    return ServerSpec("granian --workers", argv, {"PYTHONPATH": str(BENCH)}, missing=missing)


def all_specs() -> list[ServerSpec]:
    """Every server of the benchmark, sockserve first."""
    return [_sockserve("rr"), _sockserve("rr", native=False), _sockserve("shared"), _sockserve("reuseport"),
            _sockserve("rr", "--access-log", label=" +access-log"),  # a line per request to the log file
            _node("rr"), _node("none"), _uvicorn(), _uvicorn(access_log=True), _granian(), _gunicorn()]


class Server:
    """A started server: its master process, stopped (with its descendants) by PID."""

    def __init__(self, spec: ServerSpec, port: int, workers: int, log: Path,
                 notify_socket: str | None = None) -> None:
        self.spec = spec
        self.port = port
        self.workers = workers
        fill = {"port": str(port), "workers": str(workers)}
        argv = [a.format(**fill) for a in spec.argv]
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET")}
        env.update({k: v.format(**fill) for k, v in spec.env.items()})
        if notify_socket:
            env["NOTIFY_SOCKET"] = notify_socket
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the master, then SIGKILL it and every descendant still there."""
        family = set(procstats.descendants(self.pid))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        # orphans come back to us (child subreaper): kill the ones that were the server's
        orphans = [p for p in procstats.children(os.getpid()) if p in family]
        for pid in orphans + procstats.descendants(self.pid):
            _kill_and_reap(pid)
        self._log.close()


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    with contextlib.suppress(ChildProcessError):  # not our child: its own parent reaps it
        os.waitpid(pid, 0)


def become_subreaper() -> None:
    """Make orphaned descendants re-parent to this process, so none escape ``stop``."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
