"""The control socket: ``sockserve status`` and ``sockserve reload --wait`` talk to the master.

A Unix stream socket (mode 0600, peers checked with SO_PEERCRED). One JSON
object per line in (a last line without its newline counts at EOF), one per line
out, then the connection closes. At most MAX_CONNECTIONS are served at once (past
it: one error line, closed at once) and a client has READ_TIMEOUT to ask, so a
client cannot hold the master's fds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..listeners import unlink_stale

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST = 64 * 1024  # bytes in one request line
READ_TIMEOUT = 2.0  # seconds a client may take to send its request (ours send it at once)
MAX_CONNECTIONS = 16  # control connections served at once; more are answered busy and closed
MAX_LOGGED = 200  # characters of a refused request's error in the log line
SOCKET_NAME = "control.sock"
log = logging.getLogger("sockserve.master")


class ControlError(Exception):
    """The control socket cannot be used; ``str()`` is a one-line reason."""


def default_control_path(environ: Mapping[str, str], instance: str | None = None,
                         uid: int | None = None) -> str | None:
    """Where the control socket is when no path is given; None when there is no such place.

    Under systemd ``$RUNTIME_DIRECTORY/control.sock`` (the first directory if
    several; the units say ``RuntimeDirectory=sockserve`` or ``sockserve-%i``).
    Otherwise ``/run/sockserve/control.sock`` for root (the packaged service's
    own; ``/run/sockserve-INSTANCE/control.sock`` for ``sockserve@INSTANCE``)
    and ``$XDG_RUNTIME_DIR/sockserve/control.sock`` for other users, as
    systemd's runtime directories are laid out.
    """
    name = f"sockserve-{instance}" if instance else "sockserve"
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime and not instance:
        return os.path.join(runtime, SOCKET_NAME)
    if (os.getuid() if uid is None else uid) == 0:
        return os.path.join("/run", name, SOCKET_NAME)
    xdg = environ.get("XDG_RUNTIME_DIR", "")
    return os.path.join(xdg, name, SOCKET_NAME) if xdg.startswith("/") else None


async def start_control(server: ControlServer, explicit: bool,
                        loop: asyncio.AbstractEventLoop) -> ControlServer | None:
    """Start ``server``; an explicit path that fails is a ConfigError (exit 2), a default one a warning.

    A default path's directory is made (mode 0700) when missing; when another
    sockserve holds it, this one runs without a control socket.
    """
    from ..config import ConfigError

    try:
        if not explicit:
            os.makedirs(os.path.dirname(server.path), mode=0o700, exist_ok=True)
        await server.start(loop)
    except (ControlError, OSError) as exc:
        if explicit:
            raise ConfigError(str(exc)) from None
        logging.getLogger("sockserve.master").warning(
            "%s; running without a control socket (sockserve status|reload need --control-socket "
            "then)", exc)
        return None
    return server


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class ControlServer:
    """Serves ``handler(request) -> response`` on a Unix socket at ``path``."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._identity: tuple[int, int] | None = None
        self._open = 0  # connections being served

    async def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Bind (replacing a stale socket) and start serving on the running loop."""
        sock = _bind_private(self.path)
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST)

    def close(self) -> None:
        """Stop serving and remove the socket file (if it is still ours)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:  # answered without reading: the fd goes back at once
            writer.write(b'{"ok": false, "error": "control socket busy: %d connections open"}\n'
                         % MAX_CONNECTIONS)
            writer.close()
            return
        self._open += 1
        try:
            response = await self._answer(reader, writer.get_extra_info("socket"))
            if "error" in response:  # one line per refused request, never a traceback
                log.warning("control request refused: %s", _truncated(str(response["error"])),
                            extra={"SOCKSERVE_EVENT": "control_refused"})
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away or never asked: nothing to answer
        finally:
            self._open -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, sock: Any) -> dict[str, Any]:
        try:  # read before judging, so even a refused client gets its answer line
            line = await asyncio.wait_for(reader.readuntil(b"\n"), READ_TIMEOUT)
        except asyncio.IncompleteReadError as exc:  # EOF: the last line needs no newline
            if not exc.partial.strip():
                raise
            line = exc.partial
        except asyncio.LimitOverrunError:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
        uid = peer_uid(sock)
        if uid not in (os.getuid(), 0):
            return {"ok": False, "error": f"permission denied for uid {uid}"}
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep, huge ints
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        if not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": "request needs \"cmd\": a string"}
        try:
            return await self.handler(request)
        except Exception as exc:  # a handler bug must not kill the master
            return {"ok": False, "error": " ".join(f"{type(exc).__name__}: {exc}".split())}


def _truncated(text: str) -> str:
    return text if len(text) <= MAX_LOGGED else f"{text[:MAX_LOGGED]}... ({len(text)} characters)"


def _bind_private(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` that only our user can open (mode 0600).

    Only a stale socket at ``path`` is replaced (listeners.unlink_stale, as for ``unix:``
    binds); anything else there, a live socket, a path too long: ControlError, nothing removed.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        unlink_stale(path)
        sock.bind(path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ControlError(f"control socket {path} is in use by another running sockserve") from None
        raise ControlError(f"control socket {path}: cannot bind: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def request(path: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send ``payload`` to the master at ``path`` and return its answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps(payload).encode() + b"\n")
            answer = _read_line(sock)
            if not answer:
                raise ControlError(f"control socket {path} closed the connection without an answer")
        except FileNotFoundError:
            raise ControlError(f"control socket {path} does not exist (is sockserve running?)") from None
        except ConnectionRefusedError:
            raise ControlError(f"control socket {path} refused the connection (sockserve not running?)") \
                from None
        except PermissionError:
            raise ControlError(f"control socket {path}: permission denied (run as the service user)") \
                from None
        except TimeoutError:
            raise ControlError(f"control socket {path}: no answer within {timeout:g}s") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror or exc}") from None
    try:
        response = json.loads(answer)
    except ValueError:
        response = None
    if not isinstance(response, dict):
        raise ControlError(f"control socket {path}: the answer is not a JSON object")
    return response


def _read_line(sock: socket.socket) -> bytes:
    """One answer line; b"" when the server closed before finishing it."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def format_status(stats: dict[str, Any]) -> str:
    """A human table of the master's statistics (``sockserve status``)."""
    head = (f"policy {stats.get('policy', '?')}, generation {stats.get('generation', '?')}, "
            f"{stats.get('served', 0)} served")
    if "state" in stats:
        head += f", {stats['state']}"
    if "pid" in stats:
        head += f", master pid {stats['pid']}"
    if stats.get("policy") == "rr" and "native" in stats:  # which hand-off path runs (native.py)
        head += ", C hand-off" if stats["native"] else ", Python hand-off"
    columns = ("id", "pid", "state", "generation", "open", "served", "restarts")
    rows = [columns] + [tuple(str(w.get(c, "")) for c in columns) for w in stats.get("workers", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) if i != 2 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    exits = [f"worker {w.get('id')}: last exit {w['last_exit']}" for w in stats.get("workers", [])
             if w.get("last_exit")]
    failed = [f"last reload failed: {stats['last_reload_error']}"] if stats.get("last_reload_error") else []
    agent = [f"HAProxy agent on {a['address']}: {a['answer']}"] if (a := stats.get("agent")) else []
    return "\n".join([head, *lines, *exits, *failed, *_recycle_lines(stats), *agent])


def _recycle_lines(stats: dict[str, Any]) -> list[str]:
    """Recycles by reason and the last one (issue 13's guards), when there were any."""
    counts, last = stats.get("recycles"), stats.get("last_recycle")
    if not counts:
        return []
    lines = ["recycles: " + ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))]
    if last:
        lines.append(f"last recycle: worker {last['worker']} ({last['reason']}), successor "
                     f"{last['successor']} listening after {last['successor_listening_s']}s")
    return lines
