"""The pure parts of sockserve.cluster: Node's handles map and keys, OpenPeer, EventEmitter, Life."""

from __future__ import annotations

import pytest

from sockserve.cluster.events import EventEmitter, Life
from sockserve.cluster.handles import Handles, OpenPeer, address_info, indexed, parse_key, server_key
from sockserve.cluster.peer import WorkerState
from sockserve.cluster.protocol import Close, Leaving, Listening, Online, ProtocolError, QueryServer


@pytest.mark.parametrize("kwargs, key", [
    ({"port": 8000}, "0.0.0.0:8000"),
    ({"port": 8000, "host": "127.0.0.1"}, "127.0.0.1:8000"),
    ({"port": 0, "host": "::1"}, "[::1]:0"),
    ({"path": "/run/x.sock"}, "unix:/run/x.sock"),
    ({"name": "http"}, "http"),
    ({"name": "http", "port": 8000}, "http=0.0.0.0:8000"),
])
def test_server_key_and_back(kwargs, key):
    assert server_key(**kwargs) == key
    name, address = parse_key(key)
    assert name == kwargs.get("name")
    assert (address is None) == ("port" not in kwargs and "path" not in kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"port": 70000}, {"port": True}, {"port": 1, "path": "/x"},
                                    {"name": "a:b"}, {"name": "unknown"}, {"name": ""}])
def test_bad_listen_arguments(kwargs):
    with pytest.raises(ValueError):
        server_key(**kwargs)


def test_the_same_address_twice_in_one_worker_is_two_keys():
    taken = ("127.0.0.1:0",)
    again = indexed("127.0.0.1:0", taken)
    assert again == "127.0.0.1:0#1" and indexed("127.0.0.1:0", (*taken, again)) == "127.0.0.1:0#2"
    assert parse_key(again) == (None, "127.0.0.1:0")
    assert parse_key("http#1") == ("http", None)


def test_address_info_is_nodes_listening_address():
    assert address_info("127.0.0.1:80") == {"address": "127.0.0.1", "port": 80, "address_type": 4,
                                            "name": None}
    assert address_info("[::1]:80", "http")["address_type"] == 6
    assert address_info("unix:/run/x.sock") == {"address": "/run/x.sock", "port": -1,
                                                "address_type": -1, "name": None}


def test_handles_are_shared_and_released_with_their_last_user():
    handles = Handles()
    first, new = handles.add("a:1", "rr", 1)
    again, new_again = handles.add("a:1", "rr", 2)
    assert new and not new_again and first is again and first.users == {1, 2}
    assert handles.remove("a:1", 1) is None  # 2 still uses it
    assert handles.remove("a:1", 2) is first and "a:1" not in handles
    assert handles.remove("a:1", 2) is None  # closing twice is harmless


def test_a_dead_worker_releases_what_only_it_used():
    handles = Handles()
    handles.add("a:1", "rr", 1)
    handles.add("b:2", "rr", 1)
    handles.add("b:2", "rr", 2)
    assert [h.key for h in handles.remove_worker(1)] == ["a:1"]
    assert handles.map["b:2"].users == {2}


def test_a_worker_joins_the_rotation_of_each_rr_handle_it_listens_on():
    # verifier v15 e1: worker 1 on a only, worker 2 on b only: each serves its own (Node's
    # one RoundRobinHandle per key); shared handles have no rotation
    handles = Handles()
    handles.add("a:1", "rr", 1)
    handles.add("b:2", "rr", 2)
    handles.add("c:3", "shared", 2)
    assert handles.rr_keys({"a:1"}) == {"a:1"} and handles.rr_keys({"b:2", "c:3"}) == {"b:2"}
    assert handles.rr_keys({"z:9"}) == set()  # not a handle (released, or never asked)
    handles.remove("a:1", 1)
    assert handles.rr_keys({"a:1", "b:2"}) == {"b:2"}


def test_open_peer_keys_come_with_queries():
    peer = OpenPeer(7)
    with pytest.raises(ProtocolError):
        peer.receive(QueryServer("a:1"))  # before Online
    assert peer.receive(Online(7, 100)) is WorkerState.ONLINE  # no keys yet: not listening
    assert peer.receive(QueryServer("a:1")) is WorkerState.ONLINE
    assert peer.receive(Listening("a:1")) is WorkerState.LISTENING
    assert peer.receive(QueryServer("b:2")) is WorkerState.ONLINE  # a second listen()
    assert peer.receive(Listening("b:2")) is WorkerState.LISTENING
    assert peer.receive(Close("a:1")) is WorkerState.LISTENING and peer.listening == {"b:2"}
    with pytest.raises(ProtocolError):
        peer.receive(Listening("c:3"))  # never asked
    assert peer.receive(Leaving()) is WorkerState.LISTENING  # it disconnects itself: Close follows
    with pytest.raises(ProtocolError):
        OpenPeer(7).receive(Online(8, 100))
    with pytest.raises(ProtocolError):
        OpenPeer(7).receive(Leaving())  # before Online


def test_emitter_order_once_and_off():
    emitter, seen = EventEmitter(), []

    def first(x):
        seen.append(("first", x))

    emitter.on("e", first).once("e", lambda x: seen.append(("once", x)))
    emitter.on("e", lambda x: 1 / 0)  # a failing listener does not stop the others
    emitter.on("e", lambda x: seen.append(("last", x)))
    assert emitter.emit("e", 1) and emitter.listener_count("e") == 3
    emitter.off("e", first)
    emitter.emit("e", 2)
    assert seen == [("first", 1), ("once", 1), ("last", 1), ("last", 2)]
    assert not emitter.emit("nothing")


@pytest.mark.parametrize("order", [("disconnected", "exited"), ("exited", "disconnected")])
@pytest.mark.parametrize("asked", [True, False])
def test_life_leaves_workers_at_the_later_of_disconnect_and_exit(order, asked):
    life = Life()
    life.online()
    life.listening()
    assert life.state == "listening" and life.exited_after_disconnect is None
    if asked:
        life.ask()
    first, second = (getattr(life, step) for step in order)
    assert first() is False  # still in cluster.workers
    assert second() is True  # now it leaves, before this event is emitted
    assert life.exited_after_disconnect is asked and life.state == "dead"
    assert not life.connected and life.dead


def test_importing_the_cluster_module_starts_nothing_and_keeps_the_policy():
    import os
    import subprocess
    import sys

    code = ("import sys; from sockserve import cluster; "
            "sides = ('sockserve.master', 'sockserve.worker'); "
            "print(sorted(m for m in sys.modules if m.startswith(sides))); "
            "print(cluster.is_primary, cluster.is_worker, cluster.worker); "
            "cluster.scheduling_policy = cluster.SCHED_NONE; print(cluster.side().scheduling_policy); "
            "print(cluster.workers)\n"
            "try:\n    cluster.fork()\nexcept RuntimeError as exc:\n    print(exc)")
    env = {k: v for k, v in os.environ.items() if k != "SOCKSERVE_WORKER_ID"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    lines = out.stdout.splitlines()
    assert lines[0] == "[]"  # nothing of either side until a name of one is used
    assert lines[1:4] == ["True False None", "1", "{}"]
    assert "cluster.run(main)" in lines[4]


def test_the_librarys_policy_variable_is_not_a_setting_of_the_command():
    """SOCKSERVE_SCHED_POLICY is sockserve.cluster's (Node's NODE_CLUSTER_SCHED_POLICY): a shell
    that exports it for a program must still run the sockserve command."""
    from sockserve.cli import from_env

    assert from_env({"SOCKSERVE_SCHED_POLICY": "none", "SOCKSERVE_WORKERS": "3"}) == {"workers": "3"}


def test_an_async_listener_emitted_outside_cluster_run_is_reported_not_left_unawaited(caplog):
    import warnings

    ran = []

    async def listener(value):
        ran.append(value)

    emitter = EventEmitter()
    emitter.on("x", listener)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "coroutine was never awaited" RuntimeWarning fails
        assert emitter.emit("x", 1) is True
    assert ran == []  # nothing to run it on
    assert "is async: emitted outside cluster.run(main), it did not run" in caplog.text
