"""Issue 13's guards on a real sockserve: recycling, request timeout, metrics, reload, idle exit."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import (
    ROOT,
    connects,
    failed_activation,
    free_port,
    http_get,
    needs_activate,
    socket_activate,
    start_on_taken_address,
    wait_for,
)

from tests.loadclient import Load

pytestmark = pytest.mark.timeout(90)
APP = "tests.apps.guarded:app"


class Watch:
    """Polls ``status`` every 30 ms: the fewest listening workers of the serving generation
    seen, and every worker id seen per slot."""

    def __init__(self, server) -> None:
        self.server = server
        self.fewest = 10**6
        self.ids: dict[int, set[int]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = self.server.status()
            serving = [w for w in stats["workers"] if w["generation"] == stats["generation"]]
            self.fewest = min(self.fewest, sum(1 for w in serving if w["state"] == "listening"))
            for w in serving:
                self.ids.setdefault(w["slot"], set()).add(w["id"])
            self.samples += 1
            time.sleep(0.03)


@pytest.mark.parametrize("policy", ["rr", "shared"])
def test_max_requests_recycles_every_worker_without_losing_a_request(start_server, policy):
    server = start_server(APP, "--workers", "2", "--max-requests", "20", "--policy", policy)
    with Watch(server) as watch, Load(server.port, threads=1, max_requests=200, seconds=60,
                                      path="/pause") as load:
        wait_for(lambda: len(load.result.outcomes) >= 200, 60, 0.1)
    result = load.result
    assert len(result.outcomes) == 200 and not result.failed, result.summary()
    stats = server.status()
    assert stats["recycles"].get("max_requests", 0) >= 4, stats["recycles"]
    if policy == "rr":  # shared: the kernel picks the accepting worker, often the same one
        assert all(len(ids) >= 3 for ids in watch.ids.values()), watch.ids  # each slot twice+
    assert watch.samples > 20 and watch.fewest >= 2, (watch.samples, watch.fewest)
    assert stats["last_recycle"]["reason"] == "max_requests"
    assert "recycled (max_requests)" in server.stderr()


def test_lifetime_recycles_under_load(start_server):
    server = start_server(APP, "--workers", "2", "--max-worker-lifetime", "2",
                          "--max-worker-lifetime-jitter", "0.5")
    with Watch(server) as watch, Load(server.port, threads=2, seconds=30, path="/pause") as load:
        wait_for(lambda: server.status()["recycles"].get("lifetime", 0) >= 2, 25, 0.1)  # ~2.5 s
    assert load.result.outcomes and not load.result.failed, load.result.summary()
    assert server.status()["recycles"].get("lifetime", 0) >= 2
    assert watch.fewest >= 2


def test_rss_over_the_limit_recycles_the_worker(start_server):
    server = start_server(APP, "--workers", "1", "--max-worker-rss", "150")
    before = server.worker_pids()
    for _ in range(3):
        assert server.get("/grow")[0] == 200  # 192 MiB held: over the limit on every sample
    assert wait_for(lambda: server.status()["recycles"].get("rss"), 20), server.stderr()
    after = wait_for(lambda: (p := server.worker_pids()) and p != before and p, 10)
    assert after and not set(after.values()) & set(before.values())
    assert server.get("/")[0] == 200
    time.sleep(4)  # the successor is small: no second recycle
    assert server.status()["recycles"] == {"rss": 1}


def test_async_request_over_the_timeout_gets_504_and_the_app_sees_the_disconnect(start_server, tmp_path):
    seen = tmp_path / "seen"
    server = start_server(APP, "--workers", "1", "--request-timeout", "2", env={"GUARDS_SEEN": str(seen)})
    for path, saw in (("/wait", "wait http.disconnect"), ("/sleep", "sleep cancelled")):
        started = time.monotonic()
        status, body = http_get(server.port, path, timeout=15)
        took = time.monotonic() - started
        assert status == 504 and "request_timeout" in body
        assert 1.8 <= took < 5, took
        assert wait_for(lambda saw=saw: seen.exists() and saw in seen.read_text(), 5), saw
    assert server.get("/")[0] == 200  # the worker serves on: an async request is cancelled, not stuck
    assert server.status()["recycles"] == {}


def test_stuck_wsgi_request_gets_504_and_recycles_its_worker(start_server):
    server = start_server("tests.apps.guarded:wsgi", "--workers", "1", "--request-timeout", "1",
                          "--graceful-timeout", "3")
    before = server.worker_pids()
    started = time.monotonic()
    status, _ = http_get(server.port, "/stuck", timeout=15)
    assert status == 504 and time.monotonic() - started < 4
    assert wait_for(lambda: server.status()["recycles"].get("request_timeout") == 1, 20), server.stderr()
    after = server.worker_pids()
    assert after and not set(after.values()) & set(before.values())
    assert server.get("/")[0] == 200
    assert wait_for(lambda: server.status()["last_recycle"], 15)  # the stuck one left (drained or killed)
    table = subprocess.run([sys.executable, "-m", "sockserve", "status", "--control-socket", server.control],
                           capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "recycles: request_timeout 1" in table and "(request_timeout)" in table, table


def test_metrics_parse_and_match_status_json(start_server):
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    server = start_server("--workers", "2", "--metrics", f"127.0.0.1:{port}")
    for _ in range(10):
        assert server.get("/")[0] == 200
    wait_for(lambda: server.status()["served"] == 10, 5)  # heartbeats carry served
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = subprocess.run([sys.executable, "-m", "sockserve", "status", "--json", "--control-socket",
                          server.control], capture_output=True, text=True, cwd=ROOT, check=True)
    status = json.loads(out.stdout)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    for w in status["workers"]:
        labels = tuple(sorted({"worker": str(w["id"]), "pid": str(w["pid"]),
                               "generation": str(w["generation"]), "slot": str(w["slot"])}.items()))
        for name in ("handed", "accepted", "served"):
            assert samples[(f"sockserve_worker_{name}_total", labels)] == w[name]
    assert samples[("sockserve_served_total", ())] == status["served"] == 10
    assert samples[("sockserve_generation", ())] == status["generation"] == 1
    assert samples[("sockserve_ready", ())] == 1 and status["ready"] is True
    assert samples[("sockserve_workers", (("state", "listening"),))] == 2
    assert samples[("sockserve_reloads_total", (("result", "ok"),))] == status["reloads"]["ok"] == 0


def test_metrics_address_in_use_is_one_line_exit_2():
    address, code, lines = start_on_taken_address("--metrics")
    assert code == 2 and lines == [f"sockserve: error: metrics: cannot listen on {address}: "
                                   "Address already in use"], lines


def test_exit_idle_time_without_socket_activation_is_refused():
    out = subprocess.run([sys.executable, "-m", "sockserve", "--exit-idle-time", "5"],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "sockserve: error: exit_idle_time: only with socket activation (LISTEN_FDS): nothing would "
        "start sockserve again on the next connection"]


RELOAD_APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"VERSION"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def test_reload_picks_up_an_edit_without_a_failed_request(start_server, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    module = code / "editme.py"
    module.write_text(RELOAD_APP.replace("VERSION", "v1"))
    server = start_server("editme:app", "--workers", "2", "--reload", "--reload-dir", str(code),
                          env={"PYTHONPATH": f"{ROOT}:{code}"})
    assert server.get("/") == (200, "v1")
    (code / "notes.txt").write_text("not a *.py file: no reload")
    with Load(server.port, threads=2, seconds=30) as load:
        time.sleep(1.0)
        assert server.status()["reloads"]["ok"] == 0
        module.write_text(RELOAD_APP.replace("VERSION", "v2"))
        edited = time.monotonic()
        assert wait_for(lambda: server.get("/") == (200, "v2"), 15), server.stderr()
        took = time.monotonic() - edited
        time.sleep(0.5)
    bodies = {o.body for o in load.result.outcomes}
    assert not load.result.failed and bodies == {"v1", "v2"}, load.result.summary()
    assert wait_for(lambda: server.status()["reloads"]["ok"] == 1, 10)  # the old generation drained
    print(f"reload: new code answered {took:.2f}s after the edit; {load.result.summary()}")


@needs_activate
def test_reload_with_socket_activation_is_refused():
    port = free_port()
    proc = socket_activate(("-l", f"127.0.0.1:{port}"), "--reload", text=True, stderr=subprocess.PIPE)
    code, ours = failed_activation(proc, port)
    assert code == 2 and len(ours) == 1, ours
    assert "reload: cannot be combined with socket activation" in ours[0]


@needs_activate
def test_exit_idle_time_under_socket_activation_exits_0_once_idle(tmp_path):
    port = free_port()
    control = str(tmp_path / "control.sock")
    proc = socket_activate(("-l", f"127.0.0.1:{port}"), "tests.apps.sample:slow_app", "--workers", "1",
                           "--exit-idle-time", "2", "--control-socket", control, "--log-target", "stderr",
                           text=True, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: connects(port), 10)  # the first connection starts sockserve
        status, body = http_get(port, "/?s=3", timeout=30)  # runs longer than the idle time
        answered = time.monotonic()
        assert (status, body) == (200, "slept 3.0\n")
        assert proc.poll() is None  # a request in flight is activity
        _, err = proc.communicate(timeout=20)
        idle = time.monotonic() - answered
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert 1.5 <= idle < 8, idle
    assert "no connection or request for 2s: stopping" in err
