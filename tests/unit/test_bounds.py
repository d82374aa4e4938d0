"""Bounds (issue 10): limit settings, the Heartbeat ``paused`` field, fds lost in transit,
urgent records on a real channel, and the start-up fd check."""

from __future__ import annotations

import socket

import pytest

from sockserve.cluster import protocol
from sockserve.cluster.channel import Channel
from sockserve.config import Config, ConfigError, make_config
from sockserve.fdlimit import check_startup, needed, soft_limit
from sockserve.worker.limits import HttpLimits


def test_limit_settings_have_defaults_and_reach_the_worker():
    config = make_config({})
    told = config.for_worker(1, ("k",))
    limits = HttpLimits.from_worker_config(told)
    assert limits == HttpLimits(idle_timeout=10.0, headers_timeout=60.0, max_header_size=16384)
    custom = make_config({"headers_timeout": "2.5"})
    assert HttpLimits.from_worker_config(custom.for_worker(1, ())).headers_timeout == 2.5
    assert HttpLimits.from_worker_config({}) == HttpLimits()  # an older master's worker config


@pytest.mark.parametrize("values, message", [
    ({"headers_timeout": 0}, "headers_timeout: must be a positive number of seconds"),
    ({"idle_timeout": -1}, "idle_timeout: must be a positive number of seconds"),
    ({"headers_timeout": 1e9}, "headers_timeout: must be a positive number of seconds"),
    ({"max_header_size": 10}, "max_header_size: must be 1024..1048576 bytes"),
    ({"max_header_size": "big"}, "max_header_size: 'big' is not a valid int"),
])
def test_bad_limit_values_are_one_line_errors(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        make_config(values)
    assert "\n" not in str(err.value)


def test_heartbeat_paused_round_trips_and_an_old_record_decodes_as_not_paused():
    beat = protocol.Heartbeat(3, 4, True)
    assert protocol.decode(protocol.encode(beat), 0, "worker") == beat
    old = bytes((protocol.Heartbeat.code,)) + b"[3,4]"
    assert protocol.decode(old, 0, "worker") == protocol.Heartbeat(3, 4, False)
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(bytes((protocol.Heartbeat.code,)) + b"[3,4,1]", 0, "worker")


def test_fewer_fds_are_accepted_only_when_the_kernel_dropped_them():
    record = protocol.encode(protocol.NewConn("k", (1, 2, 3)))
    assert protocol.decode(record, 1, "master", fds_lost=True) == protocol.NewConn("k", (1, 2, 3))
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(record, 1, "master")
    with pytest.raises(protocol.ProtocolError):  # more than it said is never fine
        protocol.decode(record, 4, "master", fds_lost=True)


def test_an_urgent_record_overtakes_queued_ones_on_a_real_socket():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sent: list[str] = []
    channel = Channel(ours, "master", lambda m, f: None, lambda r: None)
    for _ in range(400):  # until the socket buffer is full and records queue
        channel.send(protocol.UserMessage("x" * 8000))
    assert channel.pending > 0
    channel.send(protocol.Ack((1,), True), urgent=True, on_sent=lambda: sent.append("ack1"))
    channel.send(protocol.Ack((2,), True), urgent=True, on_sent=lambda: sent.append("ack2"))
    assert sent == []  # not on the wire yet
    theirs.setblocking(False)
    order: list[str] = []
    for _ in range(1000):  # bounded: read what is buffered, let the channel write more
        try:
            data = theirs.recv(protocol.MAX_RECORD)
        except BlockingIOError:
            if not channel.pending:
                break
            channel._writable()
            continue
        msg = protocol.decode(data, 0, "worker")
        order.append("user" if isinstance(msg, protocol.UserMessage) else f"ack{msg.seqs[0]}")
    first_ack = order.index("ack1")
    assert order[first_ack + 1] == "ack2" and order.count("user") == 400
    assert first_ack < 100 and sent == ["ack1", "ack2"]
    ours.close()
    theirs.close()


def test_start_up_check_names_the_limit_and_the_need():
    small = make_config({"workers": 2})
    check_startup(small, 1)  # this box has room for two workers
    huge = Config(workers=1024, rr_window=64)
    if needed(huge, 1) <= soft_limit():
        pytest.skip(f"the soft fd limit {soft_limit()} is high enough even for 1024 workers")
    with pytest.raises(ConfigError, match=r"RLIMIT_NOFILE .* is \d+: sockserve needs at least \d+ fds "
                                          r"for 1024 workers and 1 listeners"):
        check_startup(huge, 1)


BUDGET_SCRIPT = r"""
import os, resource
from sockserve.worker.fdpressure import FdBudget, RESERVE, RESUME_AT
used = {int(fd) for fd in os.listdir("/proc/self/fd")}
lowest = next(n for n in range(len(used) + 1) if n not in used)
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 21, hard))  # 21 free: 1 spare, 20 to probe
paused = []
budget = FdBudget(lambda: paused.append(True))
print("start", budget.paused, budget.probe(0))
held = [os.dup(0) for _ in range(6)]  # the app opens fds the estimate cannot see ...
print("estimate", budget.low(0))
budget.refresh(0)  # ... until the next heartbeat probes
print("heartbeat", budget.paused, len(paused), budget.low(0))
for fd in held:
    os.close(fd)
print("resume at 21 free", budget.may_resume(0))
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 60, hard))
print("resume at 59 free", budget.may_resume(0), budget.paused, len(paused))
"""


def test_fd_budget_pauses_near_the_limit_and_resumes_with_room():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", BUDGET_SCRIPT], cwd=root, capture_output=True,
                          text=True, timeout=30, env={"PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "start False 21",  # the fd listdir used is free again: one more than planned
        "estimate False",
        "heartbeat True 1 True",
        "resume at 21 free False",
        "resume at 59 free True False 1",
    ]
