"""The control socket: a real server on a temp path, the blocking client, the status table."""

import asyncio
import json
import os
import socket
import stat
import subprocess
import tempfile

import pytest

from sockserve.master.control import ControlError, ControlServer, default_control_path, format_status, request


def loop_factories():
    factories = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        return factories
    return [*factories, pytest.param(uvloop.new_event_loop, id="uvloop")]


async def echo(req):
    if req.get("cmd") == "boom":
        raise RuntimeError("boom")
    return {"ok": True, "got": req}


def serve(path, client, new_loop=asyncio.new_event_loop, handler=echo):
    """Start a ControlServer at ``path``, run blocking ``client()`` in a thread, close; its result."""
    async def main():
        server = ControlServer(path, handler)
        await server.start(asyncio.get_running_loop())
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, client), 20)
        finally:
            server.close()

    loop = new_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


@pytest.mark.parametrize("new_loop", loop_factories())
def test_request_gets_the_handler_answer(tmp_path, new_loop):
    path = str(tmp_path / "control.sock")
    answer = serve(path, lambda: request(path, {"cmd": "status"}, 5), new_loop)
    assert answer == {"ok": True, "got": {"cmd": "status"}}


def test_socket_is_private_and_removed_on_close(tmp_path):
    path = str(tmp_path / "control.sock")
    mode = serve(path, lambda: os.stat(path).st_mode)
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert not os.path.exists(path)


def test_handler_error_is_an_answer_not_a_crash(tmp_path):
    path = str(tmp_path / "control.sock")

    def client():
        return request(path, {"cmd": "boom"}, 5), request(path, {"cmd": "after"}, 5)

    assert serve(path, client) == ({"ok": False, "error": "RuntimeError: boom"},
                                   {"ok": True, "got": {"cmd": "after"}})


def raw_exchange(path, data):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(data)
        return json.loads(sock.makefile("rb").readline())


def test_malformed_requests_are_answered_with_an_error(tmp_path):
    path = str(tmp_path / "control.sock")

    def client():
        return (raw_exchange(path, b"not json\n"), raw_exchange(path, b"[1, 2]\n"),
                raw_exchange(path, b"x" * 70000 + b"\n"))

    assert serve(path, client) == ({"ok": False, "error": "request is not JSON"},
                                   {"ok": False, "error": "request must be a JSON object"},
                                   {"ok": False, "error": "request longer than 65536 bytes"})


def test_missing_socket_is_a_control_error(tmp_path):
    path = str(tmp_path / "absent.sock")
    with pytest.raises(ControlError, match=r"absent.sock does not exist \(is sockserve running\?\)"):
        request(path, {"cmd": "status"}, 2)


def make_stale_socket(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # bound, never listening: like a socket left by a dead master


def test_stale_socket_refuses_and_is_replaced_by_a_new_server(tmp_path):
    path = str(tmp_path / "control.sock")
    make_stale_socket(path)
    with pytest.raises(ControlError, match="refused the connection"):
        request(path, {"cmd": "status"}, 2)
    assert serve(path, lambda: request(path, {"cmd": "x"}, 5)) == {"ok": True, "got": {"cmd": "x"}}


def test_a_live_control_socket_is_not_stolen(tmp_path):
    path = str(tmp_path / "control.sock")

    def second_server():
        with pytest.raises(ControlError, match="in use by another running sockserve"):
            asyncio.run(ControlServer(path, echo).start())
        return request(path, {"cmd": "still-first"}, 5)

    assert serve(path, second_server) == {"ok": True, "got": {"cmd": "still-first"}}


SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may be unreadable for nobody


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client under another uid")
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs /usr/bin/python3 for the nobody client")
def test_peer_of_another_uid_is_refused():
    directory = tempfile.mkdtemp(prefix="sockserve-control-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "control.sock")
    code = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); "
            "s.sendall(b'{}\\n'); print(s.makefile().readline())")

    def client():
        os.chmod(path, 0o666)  # let the kernel pass the connect so SO_PEERCRED decides
        done = subprocess.run([SYSTEM_PYTHON, "-c", code, path], user=65534, cwd="/",
                              capture_output=True, text=True, timeout=20)
        return json.loads(done.stdout) if done.returncode == 0 else done.stderr

    try:
        assert serve(path, client) == {"ok": False, "error": "permission denied for uid 65534"}
    finally:
        os.rmdir(directory)


def test_default_control_path_uses_the_first_runtime_directory():
    assert default_control_path({"RUNTIME_DIRECTORY": "/run/sockserve"}) == "/run/sockserve/control.sock"
    assert default_control_path({"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == "/run/a/control.sock"
    assert default_control_path({}, uid=1000) is None  # not root, no XDG_RUNTIME_DIR


def test_status_table_lists_every_worker():
    worker = {"id": 1, "pid": 101, "state": "listening", "generation": 2, "open": 3, "served": 40,
              "handed": 41, "accepted": 41, "rejected": 0, "rehanded": 0, "restarts": 0, "last_exit": ""}
    crashed = {**worker, "id": 12, "pid": 20202, "served": 5, "restarts": 1,
               "last_exit": "killed by SIGKILL (out of memory?)"}
    text = format_status({"policy": "rr", "generation": 2, "workers": [worker, crashed], "served": 45})
    assert text.splitlines() == [
        "policy rr, generation 2, 45 served",
        "id    pid  state      generation  open  served  restarts",
        " 1    101  listening           2     3      40         0",
        "12  20202  listening           2     3       5         1",
        "worker 12: last exit killed by SIGKILL (out of memory?)",
    ]
    for native, path in ((True, "C"), (False, "Python")):
        text = format_status({"policy": "rr", "generation": 2, "served": 0, "native": native})
        assert text.splitlines()[0] == f"policy rr, generation 2, 0 served, {path} hand-off"
    assert "hand-off" not in format_status({"policy": "shared", "generation": 2, "native": False})
