"""The supervisor core, one overlap at a time (issue 9): plain event sequences, exact actions."""

from __future__ import annotations

from dataclasses import replace

from supervisorsteps import listen, of

from sockserve.config import make_config
from sockserve.master import lifecycle as L
from sockserve.master.lifecycle import Phase
from sockserve.master.supervisor import Supervisor

CONFIG = make_config({"workers": 2, "boot_timeout": 5, "graceful_timeout": 3, "restart_delay_max": 2})


def running(config=CONFIG):
    core = Supervisor(config)
    core.handle(L.Start())
    listen(core, *range(1, config.workers + 1))
    assert core.phase is Phase.RUNNING
    return core


def reload_to(core, config, request="r"):
    """Reload and let the new generation boot: (actions, its worker ids)."""
    out = core.handle(L.Reload(request))
    [read] = of(out, L.ReadConfig)
    out = core.handle(L.ConfigRead(read.attempt, config))
    return out, [s.worker for s in of(out, L.Spawn)]


def test_sigterm_while_booting_stops_at_once_with_exit_0():
    core = Supervisor(CONFIG)
    core.handle(L.Start())
    out = core.handle(L.Term())
    assert {(k.worker, k.signal) for k in of(out, L.Kill)} == {(1, "SIGKILL"), (2, "SIGKILL")}
    assert core.phase is Phase.STOPPING and not of(out, L.Exit)
    core.handle(L.Exited(1, "disconnected", -9, "killed", 0.1))
    assert of(core.handle(L.Exited(2, "disconnected", -9, "killed", 0.1)), L.Exit) == [L.Exit(0)]


def test_a_reload_asked_for_while_starting_runs_once_ready():
    core = Supervisor(CONFIG)
    core.handle(L.Start())
    queued = core.handle(L.Reload("r"))
    assert of(queued, L.Log)[0].event == "reload_queued" and not of(queued, L.ReadConfig)
    out = listen(core, 1, 2)
    assert of(out, L.Notify)[0].lines[0] == "READY=1" and of(out, L.ReadConfig)
    assert core.phase is Phase.RELOADING


def test_after_a_reload_misses_boot_timeout_the_generation_is_gone_and_the_next_works():
    core = running()
    _, new = reload_to(core, CONFIG, "first")
    out = core.handle(L.Timer(("boot", 2)))
    [result] = of(out, L.ReloadResult)
    assert result.ok is False and "did not listen within 5s" in result.message
    assert {k.worker for k in of(out, L.Kill)} == set(new) and core.phase is Phase.RUNNING
    for w in new:
        core.handle(L.Exited(w, "disconnected", -9, "killed", 5.0))
    assert set(core.generations) == {1}
    _, newer = reload_to(core, CONFIG, "second")
    out = listen(core, *newer)
    assert of(out, L.Promote) == [L.Promote(3, CONFIG)]
    for w in (1, 2):
        out = core.handle(L.Exited(w, "disconnected", 0, "exited after disconnect", 9.0))
    drained = "generation 3 serving, generation 1 drained"
    assert of(out, L.ReloadResult) == [L.ReloadResult("second", True, drained)]
    assert core.summary()["generation"] == 3 and set(core.generations) == {3}


def test_a_second_reload_while_the_first_drains_gets_its_own_generation():
    core = running()
    _, new = reload_to(core, CONFIG, "first")
    listen(core, *new)  # generation 2 serves, generation 1 drains
    out = core.handle(L.Reload("second"))
    assert of(out, L.ReadConfig) and core.phase is Phase.RELOADING  # reads the config now


def test_a_reload_asked_for_while_one_boots_runs_after_it():
    core = running()
    _, new = reload_to(core, CONFIG, "first")
    assert not of(core.handle(L.Reload("second")), L.ReadConfig)
    out = listen(core, *new)
    assert of(out, L.Promote) and of(out, L.ReadConfig)


def test_ttin_during_a_reload_survives_it():
    core = running()
    _, new = reload_to(core, CONFIG)
    out = core.handle(L.Ttin())
    assert [(s.generation, s.slot) for s in of(out, L.Spawn)] == [(1, 2), (2, 2)]
    listen(core, *new, *[s.worker for s in of(out, L.Spawn)])
    assert core.summary()["size"] == 3 and core.summary()["generation"] == 2


def test_a_failing_replacement_is_retried_after_its_backoff_never_a_boot_failure():
    core = running()
    out = core.handle(L.Exited(1, "crashed", 1, "exited unexpectedly with code 1", 20.0))
    assert of(out, L.SetTimer) == [L.SetTimer(("respawn", 1, 0), 0.1)]
    [spawn] = of(core.handle(L.Timer(("respawn", 1, 0))), L.Spawn)
    core.handle(L.BootError(spawn.worker, "cannot load app: database down"))
    out = core.handle(L.Exited(spawn.worker, "boot_failure", 6, "could not load the application", 0.5))
    assert of(out, L.SetTimer) == [L.SetTimer(("respawn", 1, 0), 0.2)] and core.phase is Phase.RUNNING
    [spawn] = of(core.handle(L.Timer(("respawn", 1, 0))), L.Spawn)
    out = core.handle(L.SpawnFailed(spawn.worker, "[Errno 24] Too many open files"))  # EMFILE
    assert of(out, L.SetTimer) == [L.SetTimer(("respawn", 1, 0), 0.4)]


def test_with_no_listening_worker_no_watchdog_and_a_bounded_exit_1():
    core = running(replace(CONFIG, workers=1))
    assert core.watchdog_ok()
    out = core.handle(L.Exited(1, "crashed", 1, "exited", 20.0))
    assert not core.watchdog_ok() and L.SetTimer(("unserved",), 7.0) in out  # boot + restart_delay_max
    out = core.handle(L.Timer(("unserved",)))
    assert core.phase is Phase.STOPPED and of(out, L.Exit) == [L.Exit(1)]


def test_sys_exit_in_the_first_generations_import_is_exit_6_with_one_line():
    core = Supervisor(CONFIG)
    core.handle(L.Start())
    out = core.handle(L.Exited(1, "crashed", 3, "exited unexpectedly with code 3", 0.2))
    [line] = [a for a in of(out, L.Log) if a.level == "critical"]
    assert "code 3" in line.message and not of(out, L.Spawn)
    out = core.handle(L.Exited(2, "disconnected", -9, "killed", 0.2))
    assert of(out, L.Exit) == [L.Exit(6)]


def test_sigterm_with_a_hung_worker_rehands_its_window_before_anyone_leaves():
    core = running()
    out = core.handle(L.Term(hung=(1,)))
    assert of(out, L.Kill) == [L.Kill(1, "SIGKILL")] and not of(out, L.Disconnect)
    assert not of(core.handle(L.QueueEmpty()), L.Disconnect)  # the hung one is not reaped yet
    core.handle(L.Exited(1, "disconnected", -9, "killed", 30.0))  # its window goes back to the queue
    assert core.wants_queue_empty
    assert of(core.handle(L.QueueEmpty()), L.Disconnect) == [L.Disconnect(2)]


def test_a_reload_that_changes_policy_promotes_it_with_its_generation():
    core = running()
    shared = replace(CONFIG, policy="shared")
    _, new = reload_to(core, shared)
    assert core.summary()["policy"] == "rr"  # not in effect before the new generation serves
    assert of(listen(core, *new), L.Promote) == [L.Promote(2, shared)]
    assert core.summary()["policy"] == "shared"


def test_after_a_reload_the_watchdog_is_no_longer_extended():
    core = running()
    out, new = reload_to(core, CONFIG)
    extends = [line for n in of(out, L.Notify) for line in n.lines if line.startswith("EXTEND")]
    assert extends == ["EXTEND_TIMEOUT_USEC=10000000"]  # boot_timeout + 5, not + graceful_timeout
    lines = [n.lines for n in of(listen(core, *new), L.Notify)]
    assert ("READY=1", "STATUS", "WATCHDOG=1") in lines  # a ping ends any extension at once


def test_a_replacement_that_cannot_load_the_app_says_why_and_is_retried():
    core = running()
    core.handle(L.Exited(1, "crashed", 1, "exited with code 1", 30.0))
    [spawn] = of(core.handle(L.Timer(("respawn", 1, 0))), L.Spawn)
    core.handle(L.BootError(spawn.worker, "RuntimeError: db down"))
    out = core.handle(L.Exited(spawn.worker, "boot_failure", 6, "could not load the application", 0.2))
    assert any("RuntimeError: db down" in log.message for log in of(out, L.Log))
    assert of(out, L.SetTimer)[0].name == ("respawn", 1, 0)


def test_ttou_at_one_worker_says_it_did_nothing():
    core = running(replace(CONFIG, workers=1))
    [log] = of(core.handle(L.Ttou()), L.Log)
    assert "ignored" in log.message and not of(core.handle(L.Ttou()), L.Disconnect)


def test_a_reload_replaced_before_its_predecessor_drained_is_still_answered():
    """Found by the state machine: generation 2 served, then reload 2 replaced it while
    generation 1 still drained; generation 2 drained first, and request 1 never got an answer."""
    core = running()
    _, first = reload_to(core, CONFIG, request=1)
    listen(core, *first)  # generation 2 serves; 1 and 2 (generation 1) drain
    _, second = reload_to(core, CONFIG, request=2)
    listen(core, *second)  # generation 3 serves; generation 2 drains too
    answers = []
    for w in (*first, 1, 2):  # generation 2's workers leave before generation 1's
        answers += of(core.handle(L.Exited(w, "disconnected", 0, "exited after disconnect", 5.0)),
                      L.ReloadResult)
    assert sorted((a.request, a.ok) for a in answers) == [(1, True), (2, True)]
