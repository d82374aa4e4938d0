"""Which policy object the Dispatcher runs, and so which hand-off path: C or Python.

The C hot path (native.py) needs the C rr engine itself as the Dispatcher's policy.  A master
keeps its own policy (the engine, for rr) until a reload brings a generation with another
policy: then a PolicySwitch goes around it (policy_switch.py) and the Python path runs, on
the same engine through its policy API.  Once the switch holds one policy again and that one
is a C engine (every other retired), the Dispatcher takes it back and the C path runs again.
Moving between the paths moves what the loop watches: C's epoll set of the listeners and C's
reading of each listening worker's channel, or the listeners and the channels themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..listeners import Listener
from . import native
from .policy_switch import PolicySwitch
from .round_robin import Action
from .shared import make_policy
from .workers import WorkerHandle


class PolicyModes:
    """Mixed into handoff.Dispatcher (its loop, listeners, workers, readers, callbacks)."""

    # the Dispatcher's (handoff.py)
    loop: asyncio.AbstractEventLoop
    listeners: dict[str, Listener]
    workers: dict[int, WorkerHandle]
    window: int
    native: bool
    _readers: set[str]
    _listening: set[int]  # workers told worker_listening and not yet worker_gone
    _listen_fd: int  # the epoll set C watches, of _listen_engine
    _listen_engine: Any  # the engine that listens on the listeners
    _engine_fds: set[int]  # the listener fds in its epoll set
    _key_index: dict[str, int]
    _apply: Callable[[list[Action]], None]
    _update_readers: Callable[[], None]
    _native_event: Callable[..., None]
    _channel_event: Callable[..., None]

    @property
    def policy(self):  # noqa: ANN201 - RoundRobin, the C one, Shared, or a PolicySwitch
        return self._policy

    @policy.setter
    def policy(self, value) -> None:  # noqa: ANN001
        """A policy that is not the C engine runs the Python path."""
        old, self._policy = getattr(self, "_policy", None), value
        if getattr(self, "native", False) and not native.is_native(value):
            self._leave_native(old)

    def make(self, mode: str) -> Any:
        """A new policy for ``mode``: rr is the C engine when it is available."""
        return native.round_robin(self.window) if mode == "rr" else make_policy(mode, self.window)

    # ------------------------------------------------------------ a reload changes policy
    def assign(self, worker_id: int, mode: str) -> None:
        """``worker_id`` (just spawned) runs ``mode``, its generation's policy.  The first one
        whose policy is not the one in effect puts a PolicySwitch around it (policy_switch.py)."""
        if not isinstance(self.policy, PolicySwitch):
            if mode == self.policy.mode:
                return
            self._wrap(worker_id)
        self.policy.assign(worker_id, mode)

    def switch(self, mode: str) -> None:
        """``mode`` is in effect from now on (a generation with it was promoted)."""
        if mode != self.policy.mode:
            if not isinstance(self.policy, PolicySwitch):
                self._wrap(None)
            self._apply(self.policy.switch(mode))
            self._unwrap()

    def _wrap(self, newcomer: int | None) -> None:
        self.policy = PolicySwitch.around(self.policy, self.make,
                                          [w for w in self.workers if w != newcomer])

    def _unwrap(self) -> None:
        """A switch left with one policy, a C engine: it is the policy again, the C path runs."""
        if isinstance(self.policy, PolicySwitch) and len(self.policy.policies) == 1:
            (only,) = self.policy.policies.values()
            if native.is_native(only) and native.available():
                self.policy = only
                self._enter_native()

    # ------------------------------------------------------------ C path <-> Python path
    def _enter_native(self) -> None:
        """The policy is the C engine: C watches the listeners and the listening workers' channels."""
        engine, loop = self.policy, self.loop
        for key in [k for k in self._readers if k != "*"]:
            loop.remove_reader(self.listeners[key].sock.fileno())
            self._readers.discard(key)
        self.native = True
        engine.hooks(self._native_event, self._channel_event, loop.time)
        self._key_index = {key: engine.key(key, native.newconn_prefix(key)) for key in self.listeners}
        if self._listen_engine is not engine:  # its epoll set stays with it: only what changed
            self._listen_engine, self._engine_fds = engine, set()
        for key, listener in self.listeners.items():
            if listener.sock.fileno() not in self._engine_fds:
                self._listen_fd = engine.listen(listener.sock.fileno(), self._key_index[key])
                self._engine_fds.add(listener.sock.fileno())
        for fd in self._engine_fds - {lst.sock.fileno() for lst in self.listeners.values()}:
            engine.unlisten(fd)  # released while the Python path ran (primary_pool.py)
            self._engine_fds.discard(fd)
        for worker_id in self._listening:
            worker = self.workers[worker_id]
            if not worker.channel.closed:
                self._attach(worker)
        self._update_readers()

    def _attach(self, worker: Any) -> None:
        """C may send NewConn on this channel itself (while it has nothing queued) and reads it."""
        fd = worker.channel.sock.fileno()
        self.policy.attach(worker.id, fd, worker.channel, worker.counters, worker)
        self.loop.add_reader(fd, self.policy.on_channel, worker.id)

    def _leave_native(self, engine: Any) -> None:
        """The loop watches what C watched: the listeners, each worker's channel."""
        self.native = False
        engine.set_accepting(False)
        if "*" in self._readers:
            self.loop.remove_reader(self._listen_fd)
            self._readers.discard("*")
        for worker in self.workers.values():
            engine.detach(worker.id)
            if not worker.channel.closed:
                worker.channel.start(self.loop)
        self._update_readers()
