"""Integration fixtures: real sockserve processes on loopback."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from sockserve.master.control import ControlError
from tests.ports import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def worker_runtime_directory(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("run")


@pytest.fixture(autouse=True)
def private_runtime_directory(worker_runtime_directory: pathlib.Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A master started here without ``--control-socket`` puts it in ``$RUNTIME_DIRECTORY``: one of
    this pytest process's (an xdist worker's) own, not root's /run/sockserve, which parallel
    workers, other runs and a real sockserve.service share.  Set for each test of this directory
    only (a box's `sockserve status` in tests/system must not see it).  A test of the root
    default removes RUNTIME_DIRECTORY from its environment (test_unix_and_control.py)."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(worker_runtime_directory))


def http_get(port: int, path: str = "/", timeout: float = 5.0, host: str = "127.0.0.1") -> tuple[int, str]:
    """One request on a new connection (Connection: close): (status, body)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, body.decode(errors="replace")


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes (EOF or reset); the socket's timeout is the hang
    guard.  A reset after an answer is a close too: a server that closes with bytes of ours
    unread makes the kernel send RST (uvicorn does; no lingering close)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def connects(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to ``host:port`` is accepted now (closed at once)."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def answers(port: int, path: str = "/") -> bool:
    """Whether ``GET path`` on ``port`` is answered 200 now (a refused or cut connection: False)."""
    try:
        return http_get(port, path)[0] == 200
    except OSError:
        return False


def start_on_taken_address(option: str) -> tuple[str, int, list[str]]:
    """Start sockserve with ``option`` (``--agent``, ``--metrics``) naming a loopback address that
    another socket already listens on: (that address, the exit code, its ``sockserve: error``
    lines)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        out = subprocess.run([sys.executable, "-m", "sockserve", "--bind", f"127.0.0.1:{free_port()}",
                              option, address, "--log-target", "stderr"],
                             capture_output=True, text=True, cwd=ROOT, timeout=30)
    errors = [line for line in out.stderr.splitlines() if line.startswith("sockserve: error")]
    return address, out.returncode, errors or [out.stderr]


def parsed(line: str) -> list:
    """A JSON line a test program printed; ``["unparsed", line]`` when it is not one, so the
    test that reads it fails on what it shows (a reader thread that raised would hide it)."""
    try:
        return json.loads(line)
    except ValueError:
        return ["unparsed", line]


def program_env(**extra: str) -> dict[str, str]:
    """The environment for a cluster program a test runs and reads line by line: ours, with
    PYTHONPATH at the repository and without PYTHONUNBUFFERED.  The programs print whole lines
    with ``flush=True``, one write each; PYTHONUNBUFFERED (which CI runners set) makes
    ``print()`` write the text and its newline apart, so two workers' lines could interleave
    into one (``[...][...]``) on the shared pipe."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


needs_activate = pytest.mark.skipif(not shutil.which("systemd-socket-activate"),
                                    reason="systemd-socket-activate is not installed")


def socket_activate(activator: tuple[str, ...], *args: str, **popen) -> subprocess.Popen:
    """``systemd-socket-activate ACTIVATOR... python -m sockserve ARGS`` from the repository, as
    systemd would start the service (``-l``, ``--fdname``, ``--accept``): the activator's Popen.
    PYTHONPATH reaches sockserve (``-E``); ``popen`` goes to Popen (``env`` replaces ours)."""
    env = popen.pop("env", {**os.environ, "PYTHONPATH": str(ROOT)})
    return subprocess.Popen(["systemd-socket-activate", "-E", "PYTHONPATH", *activator, sys.executable,
                             "-m", "sockserve", *args], cwd=ROOT, env=env, **popen)


def failed_activation(proc: subprocess.Popen, port: int) -> tuple[int, list[str]]:
    """A socket-activated start that must fail (``proc`` from socket_activate with
    ``stderr=PIPE, text=True``): the first connection to ``port`` starts sockserve; then its exit
    code and its own stderr lines (``sockserve...``, not the activator's)."""
    try:
        assert wait_for(lambda: connects(port), 10)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # never leave the activator behind, even when the test fails
            proc.kill()
            proc.wait()
    return proc.returncode, [line for line in err.splitlines() if line.startswith("sockserve")]


def terminate(proc: subprocess.Popen, grace: float = 40) -> int:
    """SIGTERM, wait up to ``grace`` s, then SIGKILL: the process's exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def worker_of(body: str) -> int:
    """Worker id from the hello app's answer: 'hello world from worker N (pid P)'."""
    return int(body.split("worker ", 1)[1].split()[0])


def children(pid: int) -> list[int]:
    try:
        text = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def in_workers(server) -> int:
    """Connections the workers hold open, as their last heartbeats (1 s apart) said: a request
    sent from a thread is in a worker once this counts it (a sleep is no such guarantee)."""
    return sum(w["open"] for w in server.status()["workers"])


def wait_for(predicate, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Server:
    """A sockserve master started by a test; stopped by PID at the end."""

    def __init__(self, tmp_path: pathlib.Path, *args: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.control = str(tmp_path / "control.sock")
        self.stderr_path = tmp_path / "stderr.log"
        self.stdout_path = tmp_path / "stdout.log"
        argv = [sys.executable, "-m", "sockserve", "--bind", f"127.0.0.1:{self.port}",
                "--control-socket", self.control, "--log-target", "stderr", *args]
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        full_env.pop("LISTEN_FDS", None)
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:  # a hang guard: 15 s failed under load
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"master exited {self.proc.returncode}: {self.stderr()}")
            try:
                return self.status()["state"] == "running"
            except (OSError, ValueError, KeyError, ControlError):
                return False
        assert wait_for(ready, timeout), f"not ready in {timeout}s: {self.stderr()}"

    def status(self) -> dict:
        from sockserve.master.control import request
        return request(self.control, {"cmd": "status"}, 5.0)

    def worker_pids(self) -> dict[int, int]:
        return {w["id"]: w["pid"] for w in self.status()["workers"] if w["state"] == "listening"}

    def get(self, path: str = "/") -> tuple[int, str]:
        return http_get(self.port, path)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stdout_lines(self) -> list[str]:
        return self.stdout_path.read_text(errors="replace").splitlines()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        return terminate(self.proc)


@pytest.fixture
def start_server(tmp_path):
    servers: list[Server] = []

    def start(*args: str, env: dict | None = None, ready: bool = True) -> Server:
        home = tmp_path / f"s{len(servers)}"
        home.mkdir()
        server = Server(home, *args, env=env)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        pids = children(server.pid)
        server.stop()
        for pid in pids:  # never leave a worker behind, even when a test failed
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ one real worker process, no master
@pytest.fixture
def start() -> Iterator:
    """``start(**kwargs)`` -> a WorkerUnderTest (workerharness.py), closed after the test."""
    from workerharness import WorkerUnderTest

    started: list = []

    def start_worker(**kwargs) -> WorkerUnderTest:
        worker = WorkerUnderTest(**kwargs)
        started.append(worker)
        return worker

    yield start_worker
    for worker in started:
        worker.close()


@pytest.fixture
def lsock() -> Iterator[socket.socket]:
    """A listening TCP socket on loopback for hand-off tests."""
    from workerharness import listener

    sock = listener()
    yield sock
    sock.close()
