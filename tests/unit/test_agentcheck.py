"""HAProxy's agent-check line (agentcheck.py) and the drain delay of a graceful stop (issue 16).

The line is a pure function of the supervisor's state: these drive a real Supervisor
through start, reload and stop and read the line at each step.
"""

from __future__ import annotations

import pytest
from supervisorsteps import listen, of

from sockserve.config import ConfigError, make_config, validate_reload
from sockserve.master import lifecycle as L
from sockserve.master.agentcheck import Load, answer, weight
from sockserve.master.lifecycle import Phase
from sockserve.master.supervisor import Supervisor

CONFIG = make_config({"workers": 2, "boot_timeout": 5, "graceful_timeout": 3, "drain_delay": 2})


def line(core, **load):
    """The agent's line for ``core`` with its listening count and size (plus ``load``)."""
    s = core.summary()
    return answer(s["state"], core.stop_stage == "delay", Load(s["listening"], s["size"], **load))


@pytest.mark.parametrize("load, expected", [
    (Load(4, 4), 100),  # idle, every worker listens
    (Load(2, 4), 50),  # half the workers listen
    (Load(4, 4, open=2000), 50),  # half the connection slots taken (1000 per worker)
    (Load(4, 4, open=30, per_worker=40), 81),  # limit_concurrency 40: 130 of 160 free
    (Load(4, 4, room=8, window=8), 25),  # rr: a quarter of the windows free
    (Load(4, 4, room=8, window=8, open=3000), 25),  # the scarcer of the two counts
    (Load(2, 2, open=5000), 1),  # over-full: 1, never 0 (0% is HAProxy's DRAIN)
    (Load(3, 2), 100),  # a worker more than the size (a resize under way): at most 100
    (Load(0, 4), 0),
])
def test_weight_follows_free_capacity(load, expected):
    assert weight(load) == expected


def test_answers_through_start_reload_and_a_graceful_stop_with_drain_delay():
    core = Supervisor(CONFIG)
    core.handle(L.Start())
    assert line(core) == "down#no-listening-worker"
    listen(core, 1)
    assert line(core) == "up drain"  # the first generation is not complete yet
    listen(core, 2)
    assert line(core) == "up ready 100%"
    assert line(core, open=1000) == "up ready 50%"
    out = core.handle(L.Reload("r"))
    assert line(core) == "up drain"  # reading the configuration
    out = core.handle(L.ConfigRead(of(out, L.ReadConfig)[0].attempt, CONFIG))
    assert line(core) == "up drain"  # the new generation boots
    listen(core, 3, 4)
    assert core.serving == 2 and line(core) == "up ready 100%"  # generation 1 drains: not ours to count
    out = core.handle(L.Term())
    assert line(core) == "up drain" and core.phase is Phase.STOPPING
    assert not of(out, L.StopAccepting) and not of(out, L.Disconnect)  # still serving
    assert of(out, L.SetTimer) == [L.SetTimer(("drain-delay",), 2)]
    out = core.handle(L.Timer(("drain-delay",)))
    assert of(out, L.StopAccepting) and line(core) == "maint"


def test_sigint_during_the_drain_delay_stops_now_and_stops_accepting():
    core = Supervisor(CONFIG)
    core.handle(L.Start())
    listen(core, 1, 2)
    core.handle(L.Term())
    out = core.handle(L.Int())
    assert of(out, L.StopAccepting) and L.CancelTimer(("drain-delay",)) in out
    assert {(k.worker, k.signal) for k in of(out, L.Kill)} == {(1, "SIGQUIT"), (2, "SIGQUIT")}
    assert line(core) == "maint"
    assert not of(core.handle(L.Timer(("drain-delay",))), L.StopAccepting)  # cancelled: nothing


def test_without_drain_delay_sigterm_stops_accepting_at_once_and_answers_maint():
    core = Supervisor(make_config({"workers": 1}))
    core.handle(L.Start())
    listen(core, 1)
    out = core.handle(L.Term())
    assert of(out, L.StopAccepting) and line(core) == "maint"


def test_a_reload_during_the_drain_delay_is_refused_and_the_stop_is_bounded_with_it():
    core = Supervisor(CONFIG)
    core.handle(L.Start())
    listen(core, 1, 2)
    out = core.handle(L.Term())
    extend = [ln for n in of(out, L.Notify) for ln in n.lines if ln.startswith("EXTEND_TIMEOUT_USEC=")]
    assert int(extend[0].split("=")[1]) == int((core.bound() + 2 + 5) * 1_000_000)
    assert of(core.handle(L.Reload("r")), L.ReloadResult) == [L.ReloadResult("r", False, "cannot reload "
                                                                              "while stopping", True)]


def test_losing_every_worker_answers_down_then_up_again():
    core = Supervisor(make_config({"workers": 1, "restart_delay_max": 1}))
    core.handle(L.Start())
    listen(core, 1)
    out = core.handle(L.Exited(1, "signal", -9, "killed by SIGKILL", 60.0))
    assert line(core) == "down#no-listening-worker"
    for timer in [t for t in of(out, L.SetTimer) if t.name[0] == "respawn"]:
        out += core.handle(L.Timer(timer.name))
    [spawn] = of(out, L.Spawn)
    listen(core, spawn.worker)
    assert line(core) == "up ready 100%"


def test_agent_and_drain_delay_settings_are_checked():
    with pytest.raises(ConfigError, match=r"^agent: 'unix:/x': expected HOST:PORT"):
        make_config({"agent": "unix:/x"})
    with pytest.raises(ConfigError, match=r"^drain_delay: must be 0 \(off\)"):
        make_config({"drain_delay": -1})
    with pytest.raises(ConfigError, match=r"^agent: .* needs a restart"):
        validate_reload(make_config({"agent": "127.0.0.1:9"}), make_config({"agent": "127.0.0.1:10"}))


def test_sockserve_check_leaves_the_agents_socket_out_of_the_app_mapping():
    from sockserve.check import fd_names

    assert fd_names({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:agent"}) == {"http": "http"}
