"""Issue 13's pure parts: recycling decisions, idle clock, reload patterns, settings, metrics text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockserve import recycling
from sockserve.cluster import protocol
from sockserve.cluster.peer import WorkerPeer, WorkerState
from sockserve.config import ConfigError, make_config
from sockserve.master.idle import IdleClock


@given(st.integers(1, 10**6), st.integers(0, 1000), st.floats(0, 1, exclude_max=True))
def test_requests_limit_is_base_plus_a_jitter_in_range(base, jitter, draw):
    assert base <= recycling.requests_limit(base, jitter, draw) <= base + jitter


def test_requests_limit_reaches_both_ends_and_is_off_at_zero():
    assert recycling.requests_limit(20, 5, 0.0) == 20
    assert recycling.requests_limit(20, 5, 0.9999) == 25
    assert recycling.requests_limit(0, 5, 0.5) == 0
    assert not recycling.requests_due(10**9, 0)
    assert recycling.requests_due(20, 20) and not recycling.requests_due(19, 20)


@given(st.floats(0.1, 1e6), st.floats(0, 1e3), st.floats(0, 1, exclude_max=True))
def test_lifetime_limit_is_base_plus_jitter(base, jitter, draw):
    limit = recycling.lifetime_limit(base, jitter, draw)
    assert base <= limit <= base + jitter
    assert recycling.lifetime_due(limit, limit) and not recycling.lifetime_due(limit * 0.99, limit)


def test_rss_needs_consecutive_samples_over_the_limit():
    watch = recycling.RssWatch(100, samples=3)
    over, under = 101 * recycling.MIB, 99 * recycling.MIB
    assert [watch.sample(s) for s in (over, over, under, over, over)] == [False] * 5  # a dip resets
    assert watch.sample(over) is True
    assert recycling.RssWatch(0).sample(10**12) is False  # off


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 2), st.integers(0, 1)), max_size=40))
def test_idle_clock_fires_exactly_after_idle_time_of_no_change(steps):
    """Fires at a step iff, for 3 s up to it, every observation was idle (busy 0) with the same
    activity: the quiet stretch starts at the first such observation."""
    clock, now, seen = IdleClock(3.0), 0.0, []
    for gap, activity, busy in steps:
        now += gap
        seen.append((now, activity, busy))
        quiet_from = now
        for t, a, b in reversed(seen):
            if b or a != activity:
                break
            quiet_from = t
        expected = not busy and now - quiet_from >= 3.0
        assert clock.observe(now, activity, busy) is expected


def test_idle_clock_basics():
    clock = IdleClock(2.0)
    assert not clock.observe(0.0, (0,), 0)
    assert not clock.observe(1.9, (0,), 0)
    assert clock.observe(2.0, (0,), 0)
    assert not clock.observe(2.5, (1,), 0)  # a new request: the clock restarts
    assert not clock.observe(5.0, (1,), 1)  # a connection open: never idle
    assert not clock.observe(6.9, (1,), 0)
    assert clock.observe(8.9, (1,), 0)
    assert not IdleClock(0).observe(10**6, (0,), 0)


def test_reload_patterns_are_uvicorns(tmp_path):
    from sockserve.master.devreload import PatternFilter

    default = PatternFilter([tmp_path], (), ())
    assert default(None, str(tmp_path / "app.py"))
    assert default(None, str(tmp_path / "pkg" / "mod.py"))
    assert not default(None, str(tmp_path / "notes.txt"))
    assert not default(None, str(tmp_path / ".hidden.py"))
    assert not default(None, str(tmp_path / ".venv" / "lib" / "x.py"))  # excluded directory
    custom = PatternFilter([tmp_path], ("*.py", "*.toml"), ("tests",))
    assert custom(None, str(tmp_path / "conf.toml"))
    assert not custom(None, str(tmp_path / "tests" / "test_x.py"))
    assert custom(None, str(Path("/elsewhere/x.py")))


@pytest.mark.parametrize(("values", "error"), [
    ({"request_timeout": -1}, "request_timeout: must be 0 (off) or a number of seconds, got -1.0"),
    ({"max_requests": -5}, "max_requests: must be 0 (off) or more, got -5"),
    ({"max_requests": "many"}, "max_requests: 'many' is not a valid int"),
    ({"max_worker_rss": -1}, "max_worker_rss: must be 0 (off) or MiB, got -1.0"),
    ({"metrics": "unix:/run/m.sock"}, "metrics: 'unix:/run/m.sock': expected HOST:PORT or [IPv6]:PORT"),
    ({"metrics": "nohost"}, "metrics: 'nohost': expected HOST:PORT or [IPv6]:PORT"),
    ({"reload": "perhaps"}, "reload: 'perhaps' is not a valid bool"),
    ({"reload": True, "exit_idle_time": 5}, "reload: cannot be combined with exit_idle_time"),
])
def test_bad_guard_settings_are_one_line(values, error):
    with pytest.raises(ConfigError) as caught:
        make_config(values)
    assert str(caught.value) == error


def test_guard_settings_from_file_and_env_forms():
    config = make_config({"reload": "yes", "reload_dirs": "src, lib", "reload_excludes": ["*.tmp"],
                          "max_requests": "100", "max_requests_jitter": 10, "request_timeout": "2.5"})
    assert config.reload is True and config.reload_dirs == ("src", "lib")
    assert config.reload_excludes == ("*.tmp",)
    told = config.for_worker(1, ("http",))
    assert (told["max_requests"], told["max_requests_jitter"], told["request_timeout"]) == (100, 10, 2.5)
    assert make_config({"reload": "0"}).reload is False


def test_recycle_message_round_trips_and_is_allowed_only_while_serving():
    record = protocol.encode(protocol.Recycle("max_requests"))
    assert protocol.decode(record, 0, "worker") == protocol.Recycle("max_requests")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(record, 0, "master")
    peer = WorkerPeer(1, ("http",))
    with pytest.raises(protocol.ProtocolError):
        peer.receive(protocol.Recycle("max_requests"))  # before it is even online
    for msg in (protocol.Online(1, 9), protocol.QueryServer("http"), protocol.Listening("http")):
        peer.receive(msg)
    assert peer.receive(protocol.Recycle("max_requests")) is WorkerState.LISTENING


def test_metrics_text_parses_and_carries_the_snapshot():
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from sockserve.master.metrics import StatisticsCollector

    worker = {"id": 3, "pid": 42, "generation": 2, "slot": 0, "state": "listening", "handed": 7,
              "accepted": 6, "rejected": 1, "rehanded": 1, "open": 2, "served": 5}
    stats = {"workers": [worker], "size": 1, "served": 17, "exits": {"crashed": 1, "disconnected": 2},
             "restarts": {"crashed": 1}, "recycles": {"max_requests": 2}, "accept_paused": 4,
             "spawn_failures": 0, "reloads": {"ok": 1, "failed": 1, "last_ok": False, "last_message": "x"},
             "generation": 2, "ready": True}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatisticsCollector(lambda: stats))
    text = generate_latest(registry).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    labels = (("generation", "2"), ("pid", "42"), ("slot", "0"), ("worker", "3"))
    assert samples[("sockserve_worker_handed_total", labels)] == 7
    assert samples[("sockserve_worker_open_connections", labels)] == 2
    assert samples[("sockserve_worker_recycles_total", (("reason", "max_requests"),))] == 2
    assert samples[("sockserve_worker_restarts_total", (("reason", "crashed"),))] == 1
    assert samples[("sockserve_accept_pauses_total", ())] == 4
    assert samples[("sockserve_reloads_total", (("result", "failed"),))] == 1
    assert samples[("sockserve_reload_last_success", ())] == 0
    assert samples[("sockserve_ready", ())] == 1
