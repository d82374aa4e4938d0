"""Worker processes: the only spawn, kill and reap in sockserve; exit classification.

Workers start by fork+exec (``os.posix_spawn``) of ``python -m sockserve.worker``,
a fresh interpreter like Node's ``child_process.fork``.  Exits are observed
through a pidfd in the master's event loop, so there is no SIGCHLD race and
no pid reuse before we reap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .. import apploader
from ..config import EXIT_APP


def worker_argv(python: str | None = None) -> tuple[str, ...]:
    """``python -m sockserve.worker``, with the master's interpreter unless told otherwise
    (a venv's: see ``apploader.worker_argv``)."""
    return apploader.worker_argv(python)


@dataclass(frozen=True)
class Spawned:
    pid: int
    pidfd: int


def spawn_worker(env: Mapping[str, str], channel_end: socket.socket, argv: tuple[str, ...], *,
                 silent: bool = False) -> Spawned:
    """Start a worker that inherits ``channel_end`` (and no other fd of ours).

    ``silent``: its stdout and stderr go to /dev/null (Node's ``setupPrimary({silent})``).
    The worker starts with SIGINT ignored (``_sigint_ignored``).
    Raises OSError when the interpreter cannot be executed.
    """
    fd = channel_end.fileno()
    os.set_inheritable(fd, True)
    quiet = [(os.POSIX_SPAWN_OPEN, out, os.devnull, os.O_WRONLY, 0) for out in (1, 2)] if silent else []
    try:
        with _sigint_ignored() as mask:
            pid = os.posix_spawn(argv[0], list(argv), {**env, "SOCKSERVE_CHANNEL_FD": str(fd)},
                                 file_actions=quiet, setsigmask=mask)
    finally:
        os.set_inheritable(fd, False)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return Spawned(pid, pidfd)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[set[signal.Signals]]:
    """Spawn with SIGINT ignored: exec keeps SIG_IGN and Python then installs no
    KeyboardInterrupt handler, so a Ctrl-C (sent to the whole process group) during a worker's
    boot (its imports, a library program's top level) prints no traceback in each worker; the
    master decides (it drains them).  SIGINT is blocked meanwhile, so one that comes is held
    for the master's own handler, not lost; yields the signal mask the child is to have."""
    if threading.current_thread() is not threading.main_thread():
        yield signal.pthread_sigmask(signal.SIG_BLOCK, ())
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield mask
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def kill(pid: int, sig: int) -> bool:
    """Send ``sig`` to ``pid``; False if it is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def reap(pid: int) -> int | None:
    """The exit code of ``pid`` (negative: killed by that signal), None if still running."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -255
    if done == 0:
        return None
    return os.waitstatus_to_exitcode(status)


# ---------------------------------------------------------------- classification
@dataclass(frozen=True)
class ExitReason:
    kind: str  # disconnected | boot_failure | crashed | killed | timeout
    code: int  # exit code, or -signal
    text: str

    @property
    def respawn(self) -> bool:
        return self.kind not in ("disconnected", "boot_failure")


def classify_exit(code: int, *, requested: bool, listening: bool,
                  timed_out: bool = False) -> ExitReason:
    """Why a worker ended, from its exit code and what the master knew.

    ``requested``: the master asked it to leave (disconnect or kill);
    ``listening``: it had reached LISTENING; ``timed_out``: killed for silence.
    """
    if timed_out:
        return ExitReason("timeout", code, "killed after missing heartbeats (worker timeout)")
    if code < 0:
        name = _signal_name(-code)
        hint = " (out of memory? the OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        kind = "disconnected" if requested else "killed"
        return ExitReason(kind, code, f"killed by {name}{'' if requested else hint}")
    if requested and code == 0:
        return ExitReason("disconnected", code, "exited after disconnect")
    if code == EXIT_APP and not listening:
        return ExitReason("boot_failure", code, "could not load the application")
    if requested:
        return ExitReason("disconnected", code, f"exited with code {code} after disconnect")
    return ExitReason("crashed", code, f"exited unexpectedly with code {code}")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
