"""The C hand-off path (``_native``), when it was built; round_robin.py otherwise.

``_native.RoundRobin`` is ``round_robin.RoundRobin`` in C (same state, same
actions; tests/unit/test_native_rr.py drives both with the same random
operations and compares every action), plus the master's hot path: accept4,
the policy's choice and ``sendmsg`` of NewConn records with SCM_RIGHTS in one
call per wake-up, and the fds of acked connections closed in C.

The extension is optional: setup.py builds it when a C compiler and the Python
headers are there.  ``SOCKSERVE_NATIVE=0`` in the environment turns it off
(the pure-Python path, e.g. to compare the two).
"""

from __future__ import annotations

import os

from ..cluster import protocol
from ..cluster.protocol import NewConn, ProtocolError
from .round_robin import Handoff, Release, RoundRobin

try:
    from . import _native
except ImportError:  # not built (no compiler): the pure-Python path
    _native = None
else:
    _native.configure(Handoff, Release, ProtocolError)
    assert _native.MAX_FDS == protocol.MAX_FDS


def available() -> bool:
    """True if the C path is built and not turned off by ``SOCKSERVE_NATIVE=0``."""
    return _native is not None and os.environ.get("SOCKSERVE_NATIVE", "1") != "0"


def round_robin(window: int) -> RoundRobin:
    """The rr policy: the C one if ``available()``, else round_robin.RoundRobin."""
    return _native.RoundRobin(window) if available() else RoundRobin(window)


def is_native(policy: object) -> bool:
    return _native is not None and isinstance(policy, _native.RoundRobin)


def newconn_prefix(key: str) -> bytes:
    """A NewConn record for ``key`` up to its first seq, from protocol.encode itself
    (one codec): ``b'\\x05["key",['``; the C path appends ``1,2]]``."""
    record = protocol.encode(NewConn(key, (1,)))
    if not record.endswith(b"[1]]"):
        raise ProtocolError(f"unexpected NewConn encoding {record[-16:]!r}")
    return record[:-3]
