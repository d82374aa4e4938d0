"""A real systemd as PID 1 in namespaces (sdbox), driven from pytest.

    box = Box.up("units")                    # boots in ~0.3 s, detached
    box.install_file("units/x.socket", "/etc/systemd/system/x.socket")
    box.run("systemctl", "start", "x.socket")
    with box.connect(("127.0.0.1", 8000)) as s: ...   # socket inside the box's netns
    box.journal("-u", "x.service")
    box.down()

The shell tools in ``sdbox/`` do the namespace work; see ``sdbox/README.md``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

SDBOX_DIR = Path(__file__).resolve().parent / "sdbox"
CLONE_NEWNET = 0x40000000
STATE_DIR_ENV = "SDBOX_STATE_DIR"


def _setns(fd: int, nstype: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, nstype)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in_netns(pid: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket in the network namespace of ``pid`` (made by a short-lived thread)."""
    out: dict = {}

    def make() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd, CLONE_NEWNET)  # this thread only
            finally:
                os.close(fd)
            out["sock"] = socket.socket(family, kind)
        except BaseException as e:  # re-raised in the caller
            out["err"] = e

    thread = threading.Thread(target=make, name="sdbox-netns")
    thread.start()
    thread.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` every 0.1 s until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cannot_boot_reason() -> str | None:
    """Why this machine cannot boot a box, or None when it can."""
    if os.geteuid() != 0:
        return "system tests need root (they boot systemd in namespaces)"
    for tool in ("unshare", "nsenter", "setpriv", "ip"):
        if shutil.which(tool) is None:
            return f"system tests need {tool!r} (util-linux/iproute2) on PATH"
    if not os.access("/lib/systemd/systemd", os.X_OK):
        return "system tests need systemd installed (/lib/systemd/systemd)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "system tests need overlayfs (modprobe overlay)"
    return None


def _tool(name: str) -> str:
    return str(SDBOX_DIR / name)


class Box:
    """One booted systemd; ``pid`` is its PID 1 as seen from the host."""

    def __init__(self, name: str, pid: int):
        self.name, self.pid = name, pid
        self.watched: list[str] = []  # units whose journal a failing test prints

    @classmethod
    def up(cls, name: str, *args: str, timeout: float = 90) -> Box:
        """Boot a box; extra args go to sdbox-up (``--ro-bind``, ``--bind``, ``--mask``)."""
        r = subprocess.run([_tool("sdbox-up"), "-n", name, "--timeout", "60", *args],
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"sdbox-up {name} failed ({r.returncode}):\n{r.stderr}")
        return cls(name, int(r.stdout.split()[-1]))

    @staticmethod
    def down_all() -> None:
        """Remove every box in $SDBOX_STATE_DIR (leftovers of a crashed run)."""
        subprocess.run([_tool("sdbox-down"), "--all"], capture_output=True, stdin=subprocess.DEVNULL)

    def down(self) -> None:
        """Tear the box down; sdbox-down checks nothing is left (no process of its PID
        namespace, its cgroup removed, no mount under its state dir).  On a loaded host the
        kernel's teardown can outlast its waits (seen once in CI: exit 1 at a module's
        teardown), so what it named as left is checked again for up to 15 s before failing."""
        r = subprocess.run([_tool("sdbox-down"), "-n", self.name], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            wait_until(lambda: _left_after_down(r.stderr) == [], 15,
                       f"what sdbox-down {self.name} left to go ({r.stderr.strip()})")

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``cmd`` inside the box (all its namespaces); output captured as text."""
        r = subprocess.run([_tool("sdbox-exec"), "-n", self.name, "--", *cmd], capture_output=True,
                           text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"in box: {' '.join(cmd)} -> {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def net_cmd(self, *cmd: str) -> list[str]:
        """argv running ``cmd`` with the host's files but the box's network (for Popen)."""
        return ["nsenter", "-t", str(self.pid), "-n", "--", *cmd]

    def net_run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.net_cmd(*cmd), capture_output=True, text=True, timeout=timeout)

    def journal(self, *args: str) -> str:
        """journalctl in the box (in RAM: read it before down())."""
        return self.run("journalctl", "--no-pager", *args).stdout

    def path(self, box_path: str) -> Path:
        """Host path of a box file, through /proc/PID/root (never resolve it)."""
        return Path(f"/proc/{self.pid}/root") / box_path.lstrip("/")

    def install_file(self, src: str | os.PathLike, box_path: str, mode: int = 0o644) -> None:
        dst = self.path(box_path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, mode)

    def write_file(self, box_path: str, text: str, mode: int = 0o644) -> None:
        dst = self.path(box_path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(text)
        os.chmod(dst, mode)

    def connect(self, addr: tuple | str, timeout: float = 10) -> socket.socket:
        """A connected socket made in the box's netns (TCP tuple, or a box unix path)."""
        if isinstance(addr, str):
            family, target = socket.AF_UNIX, str(self.path(addr))
        else:
            family, target = (socket.AF_INET6 if ":" in addr[0] else socket.AF_INET), addr
        sock = socket_in_netns(self.pid, family)
        sock.settimeout(timeout)
        try:
            sock.connect(target)
        except BaseException:
            sock.close()
            raise
        return sock

    def get(self, addr: tuple | str = ("127.0.0.1", 8000), path: str = "/") -> str:
        """The body of ``GET path`` on a fresh connection in the box (Connection: close); asserts a 200."""
        with self.connect(addr, timeout=20) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.decode().partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 200"), head
        return body

    def children(self, unit: str) -> set[int]:
        """PIDs of the children of ``unit``'s main process (a sockserve master's workers)."""
        main = self.show(unit, "MainPID")["MainPID"]
        return {int(p) for p in self.run("pgrep", "-P", main, check=False).stdout.split()}

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show`` properties of ``unit`` as a dict."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def diagnostics(self, *units: str) -> str:
        """Status and journal of ``units`` (whole journal tail when none), for failure reports."""
        parts = []
        for unit in units:
            parts.append(self.run("systemctl", "status", "--no-pager", "-l", unit, check=False).stdout)
        unit_args = [a for u in units for a in ("-u", u)]
        parts.append(self.run("journalctl", "--no-pager", "-n", "200", *unit_args, check=False).stdout)
        return "\n".join(parts)


def _left_after_down(stderr: str) -> list[str]:
    """What sdbox-down reported as left that is still there: live processes (not zombies), a
    cgroup directory (removed here once empty), mounts under the state dir."""
    left = []
    for pids in re.findall(r"processes still in \S+: ([\d ]+)", stderr):
        for pid in pids.split():
            try:
                state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
            except (OSError, IndexError):
                continue
            if state != "Z":
                left.append(f"pid {pid}")
    for cgroup in re.findall(r"cgroup (\S+) not removable", stderr):
        for sub in sorted(Path(cgroup).glob("**/"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        if Path(cgroup).exists():
            left.append(f"cgroup {cgroup}")
    for state_dir in re.findall(r"mounts under (\S+) visible", stderr):
        if state_dir in Path("/proc/self/mountinfo").read_text():
            left.append(f"mounts under {state_dir}")
    return left
