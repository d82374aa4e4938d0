"""Process figures read from /proc: CPU time, RSS, descendants."""

from __future__ import annotations

import os

_TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def cpu_us(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads) in µs, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) * _TICK_US  # fields 14, 15 of stat(5)


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid``, parents before children."""
    result: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop(0)
        result.append(child)
        todo.extend(children(child))
    return result


def cmdline(pid: int) -> str:
    """The command line of ``pid`` joined by spaces, '' if it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.semaphore_tracker",
            "multiprocessing.forkserver")


def workers(master: int) -> list[int]:
    """The master's worker processes: its children, less multiprocessing helpers."""
    return [c for c in children(master) if not any(h in cmdline(c) for h in _HELPERS)]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"
