"""Restart back-off and exit classification."""

import signal

from sockserve.config import EXIT_APP
from sockserve.master.backoff import Backoff
from sockserve.master.process import classify_exit


def test_backoff_doubles_up_to_the_maximum_and_resets_after_a_stable_run():
    b = Backoff(maximum=1.0, stable_after=10.0)
    delays = [b.exited(lived=0.5, crashed=True) for _ in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.exited(lived=11.0, crashed=True) == 0.1


def test_clean_exit_does_not_wait():
    assert Backoff().exited(lived=0.1, crashed=False) == 0.0


def test_exit_classification():
    assert classify_exit(0, requested=True, listening=True).kind == "disconnected"
    assert classify_exit(EXIT_APP, requested=False, listening=False).kind == "boot_failure"
    crash = classify_exit(1, requested=False, listening=True)
    assert crash.kind == "crashed" and crash.respawn
    oom = classify_exit(-signal.SIGKILL, requested=False, listening=True)
    assert oom.kind == "killed" and "SIGKILL" in oom.text and "OOM" in oom.text and oom.respawn
    assert classify_exit(-signal.SIGKILL, requested=True, listening=True).kind == "disconnected"
    assert classify_exit(-9, requested=False, listening=True, timed_out=True).kind == "timeout"


def test_drain_kill_leaves_room_for_the_worker_s_own_shutdown():
    from sockserve.config import EXIT_SLACK, SHUTDOWN_BUDGET, make_config

    c = make_config({"graceful_timeout": 3})
    # graceful_timeout, then the worker's own shutdown budget (it cancels, runs lifespan
    # shutdown and exits by itself), then a second's slack: only then SIGKILL
    assert c.drain_kill_after() == 3 + SHUTDOWN_BUDGET + EXIT_SLACK
