"""Drives an example program inside a private network namespace (``unshare -rn``), so that it
listens on port 8000 as the Node original does without meeting anything else's port 8000.

    unshare -rn python netns_examples.py counter|hello     (run by test_cluster_examples.py)

Brings ``lo`` up, runs the example, talks to it on 127.0.0.1:8000, stops it with SIGTERM and
prints one JSON object: what the example printed and what the client saw.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PORT = 8000


READERS: dict[int, threading.Thread] = {}  # pid -> the thread reading its output


def start(example: str) -> tuple[subprocess.Popen, list[str]]:
    """The example running, and the list its output lines go to (a thread reads them)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the test's program_env(): no PYTHONUNBUFFERED
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / example)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    READERS[proc.pid] = threading.Thread(
        target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    READERS[proc.pid].start()
    return proc, lines


def read_until(proc: subprocess.Popen, lines: list[str], done, seconds: float) -> bool:
    """Wait until ``done(lines)`` (False at the deadline)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done(lines):
            return True
        time.sleep(0.05)
    return False


def request(conn: http.client.HTTPConnection) -> str:
    """One GET on a keep-alive connection: the body."""
    conn.request("GET", "/")
    return conn.getresponse().read().decode()


def connect(seconds: float = 15) -> http.client.HTTPConnection:
    """A connection to port 8000, once the primary listens there (its first worker asked)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
            conn.connect()
            return conn
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen, lines: list[str]) -> int:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    READERS[proc.pid].join(10)  # every line read: EOF once the primary and its workers are gone
    return proc.returncode


def counter(made: int = 10) -> dict:
    """numReqs: ``made`` requests, then the lines printed for 2.5 s more."""
    proc, lines = start("cluster_counter.py")
    bodies = []
    for _ in range(made):
        conn = connect()
        bodies.append(request(conn))
        conn.close()
    read_until(proc, lines, lambda ls: False, 2.5)
    return {"bodies": bodies, "made": made, "rc": stop(proc, lines), "lines": lines}


def hello() -> dict:
    """Every worker started, each answers on its own connection; one killed: its death logged."""
    (proc, lines), cpus = start("cluster_hello.py"), os.cpu_count()
    started = read_until(proc, lines, lambda ls: sum("started" in line for line in ls) == cpus, 15)
    for _ in range(50):  # a worker prints "started" before the primary has its QueryServer:
        conns = [connect() for _ in range(cpus)]  # until each is in the rotation (<= 5 s)
        bodies = [request(conn) for conn in conns]
        servers = [server_pids(conn) for conn in conns]
        for conn in conns:
            conn.close()
        if len({tuple(pids) for pids in servers}) == cpus:
            break
        time.sleep(0.1)
    workers = [int(line.split()[1]) for line in lines if line.startswith("Worker ")]
    victim = workers[0] if workers else 0
    if victim:
        os.kill(victim, 15)
        read_until(proc, lines, lambda ls: f"worker {victim} died" in ls, 10)
    conn = connect()
    after = request(conn)
    conn.close()
    return {"started": started, "bodies": bodies, "servers": servers, "workers": workers,
            "victim": victim, "after": after, "rc": stop(proc, lines), "lines": lines}


def server_pids(conn: http.client.HTTPConnection) -> list[int]:
    """The pids holding the server side of ``conn`` (by its inode in /proc/net/tcp)."""
    port = conn.sock.getsockname()[1]
    inode = ""
    for row in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if int(fields[1].split(":")[1], 16) == PORT and int(fields[2].split(":")[1], 16) == port:
            inode = fields[9]
    pids = []
    for fd_dir in pathlib.Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in fd_dir.iterdir()):
                pids.append(int(fd_dir.parent.name))
        except OSError:
            continue
    return pids


if __name__ == "__main__":
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    print(json.dumps({"counter": counter, "hello": hello}[sys.argv[1]]()))
