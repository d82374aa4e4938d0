"""``sockserve.cluster`` in a worker: Node's lib/internal/cluster/child.js on the service's runtime.

The program started by ``cluster.fork()`` finds ``SOCKSERVE_WORKER_ID`` and its channel in
its environment; ``cluster.run(main)`` makes its ``ChildWorker`` (runtime.Worker: Online,
heartbeats, hand-offs and acks, shared accepts, the drain at ``Disconnect``) and runs
``main``.  ``await sockserve.listen(app, port=8000)`` is Node's ``server.listen(8000)`` in a
worker: the app's adapter is made (ASGI, WSGI or an asyncio stream handler, worker/apps.py)
and started, ``QueryServer(key)`` goes to the primary, and the reply is served as the
service's workers serve theirs (rr hand-offs or the shared socket).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from ..cluster import protocol
from ..cluster.handles import address_info, indexed, parse_key, server_key
from ..config import EXIT_FAILURE
from ..eventloop import cancelled_by, run_soon
from . import apps, limits
from .appset import AppSet
from .runtime import Worker, current_worker

log = logging.getLogger("sockserve.worker")
CONFIG = {"keys": [], "heartbeat_interval": 1.0, "graceful_timeout": 30.0, "backlog": 511}


class ListenError(OSError):
    """The primary could not open what ``listen()`` asked for (its one-line reason)."""


class Server:
    """What ``listen()`` returns: Node's ``net.Server`` as far as a cluster worker sees it."""

    def __init__(self, worker: ChildWorker, key: str, address: str) -> None:
        self.key, self._worker, self._address = key, worker, address
        self.listening = True

    def address(self) -> dict[str, Any]:
        """``{"address", "port", "address_type", "name"}`` (Node's ``server.address()``)."""
        return address_info(self._address, parse_key(self.key)[0])

    def close(self) -> None:
        """Stop taking connections here; the primary releases the handle with its last user."""
        if self.listening:
            self.listening = False
            self._worker.close_server(self.key)


class ChildWorker(Worker):
    """``cluster.worker``: Node's Worker in a worker process, plus the servers of ``listen()``.

    The service's workers are ChildWorkers too (worker/main.py): their ``config`` names the
    keys and ``adapter`` serves them (one app, or an AppSet: one per listener); they ask for
    those keys at start (runtime.Worker), a library worker in each ``listen()`` (its AppSet
    grows): one QueryServer, reply, key-to-app and serving path for both.
    """

    def __init__(self, worker_id: int, sock: socket.socket, loop: asyncio.AbstractEventLoop, *,
                 config: dict[str, Any] | None = None, adapter: Any = None) -> None:
        self.library = config is None  # started by cluster.fork(), not by the sockserve service
        self.sigterm_drains = not self.library  # worker.kill() kills, as in Node
        self.apps = AppSet({}) if adapter is None else adapter  # the library's grows with listen()
        super().__init__(worker_id, dict(CONFIG) if config is None else config, sock, self.apps, loop)
        self._thread = threading.get_ident()
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._addresses: dict[str, str] = {}  # key -> the address the primary said
        self._acceptors: dict[str, Any] = {}
        self._asked = False  # the primary sent Disconnect
        self._before_online: list[Any] | None = [] if self.library else None  # send() at import
        self.state = "online"

    @property
    def process(self) -> Worker:
        return self  # ``cluster.worker.process.pid``: this process

    @property
    def exited_after_disconnect(self) -> bool | None:
        return True if self.disconnecting else None

    def send(self, payload: Any) -> bool:
        """A JSON value to the primary (Node's ``process.send``); safe from app threads (WSGI).
        Sent before ``cluster.run(main)`` (at import): kept, and sent in order after ``Online``."""
        if self._before_online is not None:
            self._before_online.append(payload)
        elif threading.get_ident() == self._thread:
            super().send(payload)
        else:
            self.loop.call_soon_threadsafe(super().send, payload)
        return True

    def online_sent(self) -> None:
        """``run()`` said ``Online``: what ``send()`` kept before goes now."""
        kept, self._before_online = self._before_online or [], None
        for payload in kept:
            self.send(payload)

    def disconnect(self) -> None:
        """Node's ``worker.disconnect()`` in a worker: close the servers, drain, exit 0; the
        primary's ``exited_after_disconnect`` is true (also when the primary asked)."""
        if self.library and not self.disconnecting and not self._asked:
            self._channel.send(protocol.Leaving())
        super().disconnect()

    def _on_message(self, msg: protocol.Message, fds: list[int]) -> None:
        if isinstance(msg, protocol.Disconnect):
            self._asked = True  # the primary asked: it knows
        super()._on_message(msg, fds)

    def _emit(self, event: str, *args: Any) -> None:
        """The program's listeners: one that raises is printed (Node would throw), never fatal;
        the service logs it (runtime.Worker)."""
        if not self.library:
            super()._emit(event, *args)
            return
        for callback in list(self._listeners.get(event, ())):
            try:
                result = callback(*args)
            except Exception:
                traceback.print_exc()
                continue
            if hasattr(result, "__await__"):  # an async def listener: a task, as Node runs it
                run_soon(result, f"{event!r} listener {callback!r}")

    def kill(self, sig: int | str = "SIGTERM") -> None:
        os.kill(self.pid, getattr(signal, sig) if isinstance(sig, str) else sig)

    destroy = kill

    def is_connected(self) -> bool:
        return not self._channel.closed

    def is_dead(self) -> bool:
        return False

    # ------------------------------------------------------------ listen
    async def listen(self, app: Any, key: str, interface: str = "auto",
                     options: dict[str, Any] | None = None) -> Server:
        if not self.library:  # its master knows its keys from the configuration only
            raise RuntimeError("listen(): the sockserve service's workers serve the configured "
                               "addresses (bind, or systemd's sockets); run the program with "
                               "sockserve.cluster.run(main) to listen yourself")
        key = indexed(key, self.keys)
        adapter = apps.adapter_for(app, interface, self.id, self.loop, options)
        limits.apply(adapter, limits.HttpLimits.from_worker_config(self.config))  # HTTP bounds
        await adapter.startup()  # ASGI lifespan before the first connection, as the service
        self.apps.add(key, adapter, started=True)
        future = self._waiting[key] = self.loop.create_future()
        self.keys += (key,)
        self._channel.send(protocol.QueryServer(key))
        try:
            address = await future
        except ListenError:
            self.keys = tuple(k for k in self.keys if k != key)
            self.apps.remove(key)
            await adapter.shutdown()
            raise
        finally:
            self._waiting.pop(key, None)
        self.state = "listening"
        return Server(self, key, address)

    def _on_server_reply(self, msg: protocol.ServerReply, fds: list[int]) -> None:
        future = self._waiting.get(msg.key)
        if msg.mode == "error" and future is not None:
            for fd in fds:
                os.close(fd)
            future.set_exception(ListenError(f"listen {msg.key}: {msg.error}"))
            return
        self._addresses[msg.key] = msg.address
        super()._on_server_reply(msg, fds)

    def _listening(self, key: str) -> None:
        if key not in self._rr_keys and self._servers:  # shared: runtime._serve appended it just now
            self._acceptors[key] = self._servers[-1]  # (Node's server.close() closes this one)
        super()._listening(key)
        future = self._waiting.get(key)
        if future is not None and not future.done():
            future.set_result(self._addresses.get(key, key))

    def close_server(self, key: str) -> None:
        """Node's ``server.close()`` in a worker: ``Close(key)`` to the primary."""
        if key in self._rr_keys:
            self._rr_keys.discard(key)
        elif (acceptor := self._acceptors.pop(key, None)) is not None:
            acceptor.close()
            self._servers.remove(acceptor)
        else:
            return
        self.keys = tuple(k for k in self.keys if k != key)  # may be asked for again
        self._answered.discard(key)
        self._channel.send(protocol.Close(key))


async def run_worker(main: Any) -> int:
    """``cluster.run(main)`` in a worker: the exit code once disconnected, or 0 with no server,
    ``message`` listener nor task left (Node's worker lives while those hold it)."""
    loop = asyncio.get_running_loop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the primary's to handle
    worker = this_worker()  # made at import when the program touched cluster.worker there
    if worker.loop is not loop:
        raise RuntimeError("cluster.run(main): the worker's loop is not the running one")
    serving = loop.create_task(worker.run())
    await asyncio.sleep(0)  # run() sent Online (SIGTERM stays a plain kill here, as in Node)
    worker.online_sent()  # run() said Online: what cluster.worker.send() kept at import goes
    own = asyncio.all_tasks()  # this one, run() and its heartbeats: not the program's work
    try:
        result = main()
        if inspect.isawaitable(result) and await cancelled_by(serving, result):
            return await serving  # disconnected while main() still waited (say, on a listen())
    except Exception as error:  # uncaught: printed as Node prints it; the worker exits 1
        if isinstance(error, ListenError):  # an address not to be had: its one line, no stack
            print(f"sockserve: error: worker {worker.id}: {error}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        worker.finish(EXIT_FAILURE)
        return EXIT_FAILURE
    while not worker.keys and not serving.done():  # Node: alive while it listens, has a message
        others = any(t not in own for t in asyncio.all_tasks())  # listener or the program's work
        if not others and not worker._listeners.get("message"):
            worker.finish(0)
            break
        await asyncio.sleep(0.05)
    return await serving


_made: list[ChildWorker] = []


def this_worker() -> ChildWorker | Worker | None:
    """``cluster.worker`` in a worker, from the module's load on (Node's child.js sets it before
    the script runs): a library worker's ChildWorker is made at the first call, with the event
    loop ``cluster.run(main)`` then runs (``worker_loop``); ``id``, ``process.pid`` and ``on``
    work at once, ``send`` is kept until ``Online``.  A service worker's: the running one (None
    while its app loads; the service makes it)."""
    if "SOCKSERVE_WORKER_CONFIG" in os.environ or _made:  # the service's worker, or made already
        return _made[0] if _made else current_worker()
    from ..eventloop import new_event_loop

    fd = int(os.environ["SOCKSERVE_CHANNEL_FD"])
    os.set_inheritable(fd, False)
    _made.append(ChildWorker(int(os.environ["SOCKSERVE_WORKER_ID"]), socket.socket(fileno=fd),
                             new_event_loop()))
    return _made[0]


def worker_loop() -> asyncio.AbstractEventLoop:
    """The loop of this library worker (``asyncio.Runner``'s loop_factory in ``cluster.run``)."""
    worker = this_worker()
    assert isinstance(worker, ChildWorker)
    return worker.loop


async def listen(app: Any, port: int | None = None, host: str | None = None, *,
                 name: str | None = None, path: str | None = None, interface: str = "auto",
                 options: dict[str, Any] | None = None) -> Server:
    """Serve ``app`` on ``port`` (and ``host``; all IPv4 addresses by default), on the unix
    socket ``path``, or on the systemd socket ``name`` (LISTEN_FDNAMES; with a port too, that
    address when systemd passed no such socket).  The primary opens it (Node's queryServer):
    rr hand-offs or the shared socket, as ``cluster.scheduling_policy`` says.

    ``app``: an ASGI app, a WSGI app or ``async def handle(reader, writer)`` (``interface``
    says which when detection cannot: asgi, wsgi, stream).  ``options``: the service's worker
    settings (http, threads, timeouts...).  Raises ListenError (an OSError: "listen KEY: the
    primary's reason"; uncaught, one ``sockserve: error:`` line and exit 1), ValueError for
    bad arguments, AppLoadError / AppStartupError for the app.
    """
    worker = current_worker()
    if not isinstance(worker, ChildWorker):
        raise RuntimeError("sockserve.listen() runs in a worker of sockserve.cluster.run(main)")
    path = os.path.abspath(path) if path is not None else None  # Node resolves it too
    return await worker.listen(app, server_key(port, host, name=name, path=path), interface, options)
