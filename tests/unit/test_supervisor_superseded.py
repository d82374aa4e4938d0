"""The supervisor core marks the reloads a stop answers as superseded (not failed), pure."""

from __future__ import annotations

from test_supervisor import CONFIG, of, reload_to, running

from sockserve.master import lifecycle as L


def test_a_stop_during_a_reload_answers_it_superseded():
    core = running()
    reload_to(core, CONFIG, "booting")  # the new generation imports the app
    core.handle(L.Reload("queued"))  # asked for during that reload: queued behind it
    out = core.handle(L.Term())
    assert sorted(of(out, L.ReloadResult), key=lambda r: r.request) == [
        L.ReloadResult("booting", False, "stopping", superseded=True),
        L.ReloadResult("queued", False, "stopping", superseded=True)]


def test_a_reload_asked_for_while_stopping_is_superseded():
    core = running()
    core.handle(L.Term())
    [result] = of(core.handle(L.Reload("late")), L.ReloadResult)
    assert (result.ok, result.superseded) == (False, True) and "stopping" in result.message


def test_a_reload_that_fails_by_itself_is_not_superseded():
    core = running()
    _, new = reload_to(core, CONFIG, "r")
    [result] = of(core.handle(L.Timer(("boot", 2))), L.ReloadResult)
    assert (result.ok, result.superseded) == (False, False)
