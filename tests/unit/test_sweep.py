"""worker/sweep.py: one timer per worker checking every connection's deadlines (issue 14)."""

from __future__ import annotations

import asyncio

from sockserve.worker.sweep import Sweep, interval


def test_the_interval_is_an_eighth_of_the_shortest_timeout_within_10ms_and_1s():
    assert interval(10.0, 60.0) == 1.0  # the defaults: once a second
    assert interval(1.0, 60.0) == 0.125
    assert interval(60.0, 0.5) == 0.0625
    assert interval(0.01, 0.01) == 0.01


class Watched:
    def __init__(self, checks_left: int, fails: bool = False) -> None:
        self.checks_left, self.fails, self.seen = checks_left, fails, []

    def check(self, now: float) -> bool:
        self.seen.append(now)
        if self.fails:
            raise AttributeError("a protocol this code does not know")
        self.checks_left -= 1
        return self.checks_left > 0


def test_the_sweep_checks_each_watched_connection_until_it_is_done_then_stops():
    loop = asyncio.new_event_loop()
    try:
        sweep = Sweep(loop, 0.01)
        short, longer, broken = Watched(2), Watched(4), Watched(9, fails=True)
        for conn in (short, longer, broken):
            sweep.watch(conn)
        loop.run_until_complete(asyncio.sleep(0.2))
        assert len(short.seen) == 2 and len(longer.seen) == 4 and len(broken.seen) == 1
        assert not sweep.watched and sweep._timer is None  # nothing watched: no timer wakes the worker
        again = Watched(1)
        sweep.watch(again)  # a new connection starts it again
        loop.run_until_complete(asyncio.sleep(0.05))
        assert len(again.seen) == 1 and sweep._timer is None
    finally:
        loop.close()
