"""Play the master's side of the cluster protocol against one real worker process.

Real process (``python -m sockserve.worker``), real SOCK_SEQPACKET socketpair,
real records (``protocol.encode``/``decode``) and real fds over SCM_RIGHTS.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from sockserve.cluster import protocol

REPO = Path(__file__).resolve().parents[2]
DEBIAN_PYTHON = "/usr/bin/python3"
_unread: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # socket -> bytes read past a response
_FDS_SPACE = socket.CMSG_SPACE(protocol.MAX_FDS * array.array("i").itemsize)


def debian_python_reason() -> str | None:
    """Why Debian's python3 + python3-uvicorn cannot run a worker, or None."""
    if not os.path.exists(DEBIAN_PYTHON):
        return f"{DEBIAN_PYTHON} is missing"
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import uvicorn, h11"], capture_output=True, timeout=30)
    return None if probe.returncode == 0 else "Debian's python3-uvicorn is not installed"


def worker_env(worker_id: int, channel_fd: int, config: dict[str, Any]) -> dict[str, str]:
    """The environment the master gives a worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    env.update(SOCKSERVE_WORKER_ID=str(worker_id), SOCKSERVE_CHANNEL_FD=str(channel_fd),
               SOCKSERVE_WORKER_CONFIG=json.dumps(config), PYTHONPATH=str(REPO))
    return env


def is_gone(pid: int) -> bool:
    """True when ``pid`` has exited (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


class WorkerUnderTest:
    """A worker process and the master's end of its channel."""

    def __init__(self, worker_id: int = 7, python: str = sys.executable, **config: Any) -> None:
        self.worker_id = worker_id
        self.config = {"app": None, "interface": "auto", "keys": ["http"], "graceful_timeout": 10.0,
                       "heartbeat_interval": 0.2, "generation": 1, "backlog": 64,
                       "log_target": "stderr", "log_level": "info", **config}
        self.master, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = worker_env(worker_id, worker_end.fileno(), self.config)
        self.proc = subprocess.Popen([python, "-m", "sockserve.worker"], env=env, cwd=REPO,
                                     pass_fds=[worker_end.fileno()], stderr=subprocess.PIPE)
        worker_end.close()
        self.heartbeats: list[protocol.Heartbeat] = []

    # ------------------------------------------------------------ channel
    def send(self, msg: protocol.Message, fds: list[int] | None = None) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.master.sendmsg([protocol.encode(msg)], anc)

    def recv(self, timeout: float = 5.0) -> protocol.Message | None:
        """The next record from the worker (None at EOF); heartbeats are kept aside."""
        deadline = time.monotonic() + timeout
        while True:
            self.master.settimeout(max(0.001, deadline - time.monotonic()))
            data, anc, _, _ = self.master.recvmsg(protocol.MAX_RECORD, _FDS_SPACE)
            if not data:
                return None
            msg = protocol.decode(data, 0, "worker")
            if not isinstance(msg, protocol.Heartbeat):
                return msg
            self.heartbeats.append(msg)

    def expect(self, kind: type[protocol.Message], timeout: float = 5.0) -> Any:
        msg = self.recv(timeout)
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}; stderr: {self.stderr_now()}"
        return msg

    def boot(self, mode: str = "rr", address: str = "", fds: list[int] | None = None) -> None:
        """Online → QueryServer → ServerReply(mode) → Listening, for key ``http``."""
        online = self.expect(protocol.Online, timeout=15)
        assert online == protocol.Online(self.worker_id, self.proc.pid)
        assert self.expect(protocol.QueryServer) == protocol.QueryServer("http")
        self.send(protocol.ServerReply("http", mode, address), fds)
        assert self.expect(protocol.Listening) == protocol.Listening("http")

    def hand_off(self, conn: socket.socket, seq: int, key: str = "http") -> protocol.Ack:
        """NewConn with ``conn``'s fd; the master's copy is closed only on accept."""
        self.send(protocol.NewConn(key, (seq,)), [conn.fileno()])
        ack = self.expect(protocol.Ack)
        assert ack.seqs == (seq,)
        if ack.accepted:
            conn.close()
        return ack

    def handed_client(self, lsock: socket.socket) -> socket.socket:
        """Boot in rr, hand over one fresh loopback connection (seq 1); the client's end."""
        self.boot("rr")
        client, conn = accepted_pair(lsock)
        self.hand_off(conn, seq=1)
        return client

    # ------------------------------------------------------------ process
    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""

    def open_fds(self) -> int:
        """Open fds of the worker, the least of a few reads: its fd-budget probe dups a spare
        fd up to 128 times for microseconds (worker/fdpressure.py), and a read may catch that."""
        counts = []
        for _ in range(5):
            counts.append(len(os.listdir(f"/proc/{self.proc.pid}/fd")))
            time.sleep(0.01)
        return min(counts)

    def close(self) -> None:
        self.master.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


# ---------------------------------------------------------------- sockets
def listener(reuseport: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def accepted_pair(lsock: socket.socket) -> tuple[socket.socket, socket.socket]:
    """(client, the master's accepted socket) over real loopback TCP."""
    client = socket.create_connection(lsock.getsockname(), timeout=5)
    conn, _ = lsock.accept()
    return client, conn


def http_request(client: socket.socket, path: str = "/", close: bool = False) -> None:
    extra = "Connection: close\r\n" if close else ""
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode())


def read_response(client: socket.socket, timeout: float = 5.0) -> tuple[bytes, bytes]:
    """(head, body) of one HTTP/1.1 response with Content-Length or close-delimited.

    Bytes read past this response (the next one on a keep-alive connection, when both
    arrive in one read) are kept for the next call on the same socket, never dropped.
    """
    client.settimeout(timeout)
    data = _unread.pop(client, b"")
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, f"connection closed before the response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = _content_length(head)
    while length is None or len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
        body += chunk
    if length is not None and len(body) > length:
        body, _unread[client] = body[:length], body[length:]
    return head, body


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def http_get(address: tuple[str, int], path: str = "/") -> bytes:
    with socket.create_connection(address, timeout=5) as client:
        http_request(client, path, close=True)
        head, body = read_response(client)
        assert head.startswith(b"HTTP/1.1 200"), head
        return body


def is_eof(sock: socket.socket, timeout: float = 3.0) -> bool:
    """True when the peer closed ``sock`` within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
