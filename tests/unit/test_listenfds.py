"""Pure parsing of LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES, and sd_notify helpers."""

import pytest

from sockserve.systemd.listenfds import ListenFdsError, format_sockname, parse_listen_env
from sockserve.systemd.notify import Notifier, extend_timeout_line, reloading_lines, scrub_env

PID = 4242


def env(**values):
    return {k: str(v) for k, v in values.items()}


def test_no_listen_pid_means_no_sockets():
    assert parse_listen_env(env(LISTEN_FDS=2), PID) == []


def test_sockets_for_another_process_are_ignored():
    assert parse_listen_env(env(LISTEN_PID=PID + 1, LISTEN_FDS=2), PID) == []


def test_unnamed_fds_start_at_3_and_are_called_unknown():
    assert parse_listen_env(env(LISTEN_PID=PID, LISTEN_FDS=2), PID) == [(3, "unknown"), (4, "unknown")]


def test_names_are_assigned_in_order():
    found = parse_listen_env(env(LISTEN_PID=PID, LISTEN_FDS=3, LISTEN_FDNAMES="http:admin:"), PID)
    assert found == [(3, "http"), (4, "admin"), (5, "unknown")]


def test_listen_pid_without_listen_fds_means_none():
    assert parse_listen_env(env(LISTEN_PID=PID), PID) == []
    assert parse_listen_env(env(LISTEN_PID=PID, LISTEN_FDS=0, LISTEN_FDNAMES=""), PID) == []


@pytest.mark.parametrize(
    "values, message",
    [
        ({"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, "LISTEN_PID='abc' is not a process id"),
        ({"LISTEN_PID": "0", "LISTEN_FDS": "1"}, "LISTEN_PID='0' is not a process id"),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": "-1"}, "LISTEN_FDS='-1' is not a non-negative number"),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": "two"}, "LISTEN_FDS='two' is not a non-negative number"),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": ""}, "LISTEN_FDS='' is not a non-negative number"),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": "99999"}, "LISTEN_FDS=99999 is more than 4096 sockets"),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http"},
         "LISTEN_FDNAMES='http' has 1 names for LISTEN_FDS=2"),
        ({"LISTEN_PID": str(PID), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"},
         "LISTEN_FDNAMES='a:b' has 2 names for LISTEN_FDS=1"),
    ],
)
def test_malformed_values_are_one_line_errors(values, message):
    with pytest.raises(ListenFdsError) as info:
        parse_listen_env(values, PID)
    assert str(info.value) == message


def test_socket_addresses_are_formatted_as_bind_specs():
    import socket

    assert format_sockname(socket.AF_INET, ("127.0.0.1", 8000)) == "127.0.0.1:8000"
    assert format_sockname(socket.AF_INET6, ("::1", 8000, 0, 0)) == "[::1]:8000"
    assert format_sockname(socket.AF_UNIX, "/run/x.sock") == "unix:/run/x.sock"
    assert format_sockname(socket.AF_UNIX, b"\0abstract") == "unix:@abstract"


def test_scrub_env_removes_systemd_variables_only():
    base = env(LISTEN_PID=1, LISTEN_FDS=1, LISTEN_FDNAMES="http", NOTIFY_SOCKET="/run/n",
               WATCHDOG_USEC=10, WATCHDOG_PID=1, JOURNAL_STREAM="1:2", PATH="/usr/bin")
    assert scrub_env(base) == {"JOURNAL_STREAM": "1:2", "PATH": "/usr/bin"}
    assert "NOTIFY_SOCKET" in base  # the original is untouched


def test_watchdog_interval_is_half_of_watchdog_usec_for_our_pid():
    import os

    assert Notifier.from_env(env(WATCHDOG_USEC=10_000_000)).watchdog_interval() == 5.0
    same = env(WATCHDOG_USEC=4_000_000, WATCHDOG_PID=os.getpid())
    assert Notifier.from_env(same).watchdog_interval() == 2.0
    other = env(WATCHDOG_USEC=4_000_000, WATCHDOG_PID=os.getpid() + 1)
    assert Notifier.from_env(other).watchdog_interval() is None
    assert Notifier.from_env(env(WATCHDOG_USEC="x")).watchdog_interval() is None
    assert Notifier.from_env({}).watchdog_interval() is None


def test_notifier_without_notify_socket_is_disabled():
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False


def test_reload_and_extend_lines():
    reloading, monotonic = reloading_lines()
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=") and int(monotonic.split("=")[1]) > 0
    assert extend_timeout_line(2.5) == "EXTEND_TIMEOUT_USEC=2500000"
