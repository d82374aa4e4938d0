"""The C rr policy agrees with round_robin.py step for step (one source of truth)."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rr_impls import c_round_robin

from sockserve.cluster.protocol import ProtocolError
from sockserve.master.round_robin import RoundRobin

ROOT = pathlib.Path(__file__).resolve().parents[2] / "sockserve" / "master"

KEYS = ["", "http", "admin"]  # "" is the default key (one listener)
OPS = st.lists(st.tuples(st.sampled_from(["add", "add", "stop", "stop_all", "remove", "distribute",
                                          "distribute", "ack", "ack", "drain_queue", "forget"]),
                         st.integers(1, 4), st.booleans(), st.integers(0, 60),
                         st.sampled_from(KEYS)), max_size=120)


def outcome(call):
    """What a call returned, or the ProtocolError it raised (its message)."""
    try:
        return call()
    except ProtocolError as exc:
        return ("ProtocolError", str(exc))


def state(rr) -> tuple:
    per_key = tuple(rr.capacity(key) for key in KEYS)
    return rr.capacity(), per_key, rr.waiting(), rr._owner, rr._handed


def call_args(op, worker, accepted, pick, key, conns, held):
    """The method and arguments of one random operation."""
    if op == "distribute":
        conn = f"conn{conns}" if pick % 2 else conns  # any object is a conn
        return "distribute", ((conn, key) if pick % 3 else (conn,))
    if op == "ack":  # mostly a seq the worker holds, sometimes a wrong one
        mine = [seq for w, seq in held if w == worker] if pick % 7 else []
        return "ack", (worker, mine[pick % len(mine)] if mine else pick, accepted)
    if op == "drain_queue":  # a retired policy's queue (policy_switch.py)
        return op, ()
    if op == "forget":  # a handle released (primary_pool.py)
        return op, (key,)
    if op == "stop_all":
        return "stop", (worker,)
    if op == "remove":
        return op, (worker,)
    return op, ((worker, key) if pick % 3 else (worker,))  # add/stop, of key or the default


@settings(max_examples=500, deadline=None)
@given(ops=OPS, window=st.integers(1, 4))
def test_c_policy_returns_the_same_actions_as_round_robin_py(ops, window):
    """Several keys, joins and leaves per key, releases (forget): every action and the state
    after each step (per-key capacity, handed per key's rotation) agree."""
    py, c = RoundRobin(window), c_round_robin(window)
    conns, held = 0, []  # held: (worker, seq) handed and not acked, as round_robin.py says
    for op, worker, accepted, pick, key in ops:
        name, args = call_args(op, worker, accepted, pick, key, conns, held)
        conns += op == "distribute"
        want = outcome(lambda: getattr(py, name)(*args))  # noqa: B023
        got = outcome(lambda: getattr(c, name)(*args))  # noqa: B023
        assert got == want, (name, args)
        assert state(c) == state(py), (name, args)
        held = [(w, s) for s, w in py._owner.items()]
    for key in KEYS:  # a joiner takes what waits, the same way
        assert c.add(99, key) == py.add(99, key)
        assert state(c) == state(py)


def test_c_policy_rejects_a_bad_window():
    import gc
    import os

    zero = os.dup(0)  # the engine freed after a failed __init__ closed fd 0 (its epfd was 0)
    try:
        with pytest.raises(ValueError):
            c_round_robin(0)
        gc.collect()
        os.fstat(0)
    finally:
        os.dup2(zero, 0)
        os.close(zero)


def test_the_c_policy_is_pure_like_round_robin_py():
    """rr_core.c, like round_robin.py, does no I/O: it includes no system headers but string.h."""
    for name in ("rr_core.c", "rr_core.h"):
        included = set(re.findall(r'#include [<"]([^>"]+)[>"]', (ROOT / name).read_text()))
        assert included <= {"Python.h", "string.h", "rr_core.h"}, (name, included)


def test_an_engine_whose_init_failed_or_never_ran_closes_no_fd():
    """Its epoll fd was 0 until __init__ succeeded, so freeing it closed fd 0 (stdin, or any
    socket that took 0): a later test's event loop aborted on it.  Real process, real fd 0."""
    c_round_robin(1)  # skips when the extension is not built
    code = ("import gc, os\nfrom sockserve.master import native\nR = native._native.RoundRobin\n"
            "try:\n    R(0)\nexcept ValueError:\n    pass\nR.__new__(R)\ngc.collect()\n"
            "os.fstat(0)\nprint('fd 0 open')")
    done = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, cwd=ROOT.parents[1])
    assert done.stdout.strip() == "fd 0 open", done.stderr[-500:]


def test_the_engine_forgets_a_listener_and_polls_the_others():
    """unlisten(fd) takes one listener out of the engine's epoll set (a released handle,
    primary_pool.py); the others stay; an fd it does not poll is a ValueError."""
    import select
    import socket

    from sockserve.master import native

    engine = c_round_robin(1)
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    try:
        engine.set_accepting(True)
        for n, sock in enumerate(socks):
            index = engine.key(f"k{n}", native.newconn_prefix(f"k{n}"))
            epfd = engine.listen(sock.fileno(), index)
            engine.add(1, f"k{n}")  # room: the listener is polled
        engine.unlisten(socks[0].fileno())
        with pytest.raises(ValueError):
            engine.unlisten(socks[0].fileno())
        poller = select.poll()  # the loop watches epfd: readable while a polled listener is
        poller.register(epfd, select.POLLIN)
        clients = [socket.create_connection(socks[0].getsockname())]
        assert poller.poll(300) == []  # k0 is forgotten: its connection waits in its queue
        clients.append(socket.create_connection(socks[1].getsockname()))
        assert poller.poll(2000) == [(epfd, select.POLLIN)]  # k1 is still polled
        for c in clients:
            c.close()
    finally:
        for sock in socks:
            sock.close()
