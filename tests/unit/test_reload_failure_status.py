"""A failed reload shows in STATUS= until a reload succeeds, and the workers the master
kills because their generation failed say so (not a crash).  The pure core's side."""

from __future__ import annotations

from dataclasses import replace

from test_supervisor import CONFIG, listen, of, reload_to, running

from sockserve.master import lifecycle as L


def test_a_failed_reload_stays_in_the_summary_until_one_succeeds():
    core = running()
    assert core.summary()["last_reload_error"] is None
    out = core.handle(L.Reload("r"))
    [read] = of(out, L.ReadConfig)
    core.handle(L.ConfigRead(read.attempt, None, "app: no listener is named 'admn'"))
    assert core.summary()["last_reload_error"] == "configuration: app: no listener is named 'admn'"
    _, workers = reload_to(core, replace(CONFIG, workers=2))
    assert core.summary()["last_reload_error"] is not None  # still booting: not yet a success
    listen(core, *workers)
    assert core.summary()["last_reload_error"] is None


def test_workers_of_a_failed_generation_are_stopped_with_the_reason():
    core = running()
    _, (first, second) = reload_to(core, CONFIG)
    core.handle(L.Online(second))
    core.handle(L.BootError(first, "ModuleNotFoundError: No module named 'adminapp'"))
    out = core.handle(L.Exited(first, "boot_failure", 6, "could not load the application", 0.3))
    assert of(out, L.Kill) == [L.Kill(second, "SIGKILL", "its generation failed to load")]
    assert "adminapp" in core.summary()["last_reload_error"]


def test_sockserve_status_prints_the_last_reload_failure():
    from sockserve.master.control import format_status

    stats = {"policy": "rr", "generation": 3, "workers": [], "last_reload_error": "configuration: x"}
    assert format_status(stats).splitlines()[-1] == "last reload failed: configuration: x"
    assert "last reload failed" not in format_status({**stats, "last_reload_error": None})
