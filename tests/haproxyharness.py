"""A real HAProxy (Debian's ``haproxy`` package) started by a test, in the foreground, on loopback.

``HAProxy(tmp_path, servers, ...)`` writes a haproxy.cfg, starts ``haproxy -db`` (no
daemon, no system service) and stops it by PID.  Every request is logged to
``requests.log`` (``log stdout``) as ``server status termination-state retries``, so a
test can say which host failed what; ``stats()`` reads ``show stat`` from its admin
socket.  ``missing_reason()`` is the one reason a test may skip: no haproxy binary.
"""

from __future__ import annotations

import csv
import io
import pathlib
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tests.ports import free_port  # noqa: F401 (the harness's users import it from here)

BACKEND = "hosts"


def wait_for(predicate: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    return predicate()


def missing_reason() -> str | None:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (scripts/setup.sh --test installs Debian's haproxy package)"
    return None


@dataclass
class Host:
    """A sockserve host as HAProxy sees it: its name, HTTP port and agent port."""

    name: str
    port: int
    agent_port: int | None = None


def config(front: int, stats_sock: str, hosts: list[Host], *, agent_inter: str = "200ms",
           extra_server: str = "", timeout_check: str = "3s") -> str:
    """haproxy.cfg for ``hosts`` behind one HTTP frontend on 127.0.0.1:``front`` (docs/scaling.md)."""
    servers = []
    for h in hosts:
        agent = (f" agent-check agent-addr 127.0.0.1 agent-port {h.agent_port} agent-inter {agent_inter}"
                 if h.agent_port else "")
        servers.append(f"    server {h.name} 127.0.0.1:{h.port} weight 100 check inter 500ms fall 2 rise 2"
                       f"{agent}{extra_server}")
    return f"""global
    maxconn 4096
    stats socket {stats_sock} mode 600 level admin
    log stdout format raw local0

defaults
    mode http
    log global
    log-format "%s %ST %ts %rc"
    timeout connect 1s
    timeout client 10s
    timeout server 10s
{f"    timeout check {timeout_check}" + chr(10) if timeout_check else ""}    retries 3
    option redispatch 1
    retry-on conn-failure 503

frontend front
    bind 127.0.0.1:{front}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
{chr(10).join(servers)}
"""


class HAProxy:
    def __init__(self, tmp_path: pathlib.Path, hosts: list[Host], prefix: tuple[str, ...] = (),
                 *, cfg: str | None = None, **options: str) -> None:
        """``prefix``: argv before haproxy's (``nsenter -t PID -n --``: a box's network).
        ``cfg``: a haproxy.cfg of the test's own instead of ``config(hosts, **options)`` (its
        ``global`` section gets the stats socket line; ``port`` is then the test's business)."""
        self.port = free_port()
        self.stats_sock = str(tmp_path / "haproxy.sock")
        self.cfg = tmp_path / "haproxy.cfg"
        if cfg is None:
            cfg = config(self.port, self.stats_sock, hosts, **options)
        else:
            assert "\nglobal\n" in "\n" + cfg, "a haproxy.cfg of one's own needs a global section"
            stats = f"    stats socket {self.stats_sock} mode 600 level admin\n"
            cfg = cfg.replace("global\n", "global\n" + stats, 1)
        self.cfg.write_text(cfg)
        self.log_path = tmp_path / "requests.log"
        self.err_path = tmp_path / "haproxy.err"
        check = subprocess.run(["haproxy", "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([*prefix, "haproxy", "-db", "-f", str(self.cfg)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        assert wait_for(lambda: pathlib.Path(self.stats_sock).exists() or self.proc.poll() is not None, 10)
        assert self.proc.poll() is None, self.err_path.read_text()

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.stats_sock)
            sock.sendall(line.encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend's servers, by server name (status, weight, agent_status...)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {r["svname"]: r for r in rows if r["pxname"] == BACKEND and r["svname"] != "BACKEND"}

    def weights(self) -> dict[str, tuple[str, int]]:
        """(status, effective weight) of each server."""
        return {name: (r["status"], int(r["weight"] or 0)) for name, r in self.stats().items()}

    def requests(self) -> list[tuple[str, int, str, str]]:
        """Every logged request: (server, status, termination state, retries)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[1].lstrip("-").isdigit():
                out.append((parts[0], int(parts[1]), parts[2], parts[3]))
        return out

    def figures(self) -> dict[str, object]:
        """What the log says: requests ``sent`` (wrk's own aborts at its end left out: ``aborted``),
        ``served`` / ``failed`` by host, failures' termination ``states``, ``retried`` by final host."""
        logged = self.requests()
        aborted = [r for r in logged if r[0] == "<NOSRV>" and r[2].startswith("C")]
        logged = [r for r in logged if r not in aborted]
        bad = [r for r in logged if not 200 <= r[1] < 400]
        return {"sent": len(logged), "served": dict(Counter(r[0] for r in logged if 200 <= r[1] < 400)),
                "failed": dict(Counter(r[0] for r in bad)), "states": dict(Counter(r[2] for r in bad)),
                "retried": dict(Counter(r[0] for r in logged if r[3] != "0")), "aborted": len(aborted)}

    def watch(self, interval: float = 0.05) -> dict[str, list[str]]:
        """Sample ``show stat`` in a thread until ``stop()``: each server's statuses, in order
        (UP, DRAIN, MAINT, DOWN, "UP 1/2"...), a new entry at each change."""
        self.seen: dict[str, list[str]] = {}
        self._done = threading.Event()

        def sample() -> None:
            while not self._done.is_set():
                try:
                    weights = self.weights()
                except OSError:
                    return
                for name, (status, _) in weights.items():
                    states = self.seen.setdefault(name, [])
                    if not states or states[-1] != status:
                        states.append(status)
                self._done.wait(interval)

        self._watcher = threading.Thread(target=sample, daemon=True)
        self._watcher.start()
        return self.seen

    def stop(self) -> None:
        if getattr(self, "_watcher", None) is not None:
            self._done.set()
            self._watcher.join(5)
            self._watcher = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
