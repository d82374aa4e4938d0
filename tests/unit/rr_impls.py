"""Both rr implementations, for tests that must hold for each: round_robin.py and the C one."""

import pytest

from sockserve.master import native
from sockserve.master.round_robin import RoundRobin


def c_round_robin(window: int = 1):
    if native._native is None:
        pytest.skip("sockserve.master._native is not built (no C compiler?)")
    return native._native.RoundRobin(window)


IMPLS = pytest.mark.parametrize("make_rr", [RoundRobin, c_round_robin], ids=["python", "c"])
