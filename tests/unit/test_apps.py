"""Application adapters: interface detection, loading errors, uvicorn protocols on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from sockserve.worker import apps, http
from sockserve.worker.wsgi import wrap_wsgi

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def sample(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(REPO))
    from tests.apps import sample

    return sample


# ---------------------------------------------------------------- detection
def test_detects_each_interface(sample) -> None:
    assert apps.detect_interface(sample.asgi_app) == "asgi"
    assert apps.detect_interface(sample.AsgiInstance()) == "asgi"
    assert apps.detect_interface(sample.AsgiInstance) == "asgi"  # a class: ASGI 2 style
    assert apps.detect_interface(sample.wsgi_app) == "wsgi"
    assert apps.detect_interface(sample.WsgiInstance()) == "wsgi"
    assert apps.detect_interface(sample.stream_handler) == "stream"


def test_varargs_callables_are_asgi_when_async_and_wsgi_when_not() -> None:
    async def asgi(*args: Any) -> None: ...

    def wsgi(*args: Any) -> list[bytes]:
        return []

    assert apps.detect_interface(asgi) == "asgi"
    assert apps.detect_interface(wsgi) == "wsgi"


def test_an_app_that_fits_no_interface_is_a_type_error(sample) -> None:
    with pytest.raises(TypeError, match="coroutine function taking 4 arguments"):
        apps.detect_interface(sample.three_and_more)
    with pytest.raises(TypeError, match="int object is not callable"):
        apps.detect_interface(42)
    with pytest.raises(TypeError, match="function taking 3 arguments"):
        apps.detect_interface(lambda a, b, c: None)


def test_import_app_follows_dotted_attributes(sample) -> None:
    assert apps.import_app("tests.apps.sample:AsgiInstance.__call__") is sample.AsgiInstance.__call__
    with pytest.raises(ValueError, match="not MODULE:ATTRIBUTE"):
        apps.import_app("tests.apps.sample")


@pytest.mark.parametrize(("spec", "interface", "message"), [
    ("tests.apps.broken:app", "auto", "RuntimeError: this app is broken on purpose"),
    ("tests.apps.sample:nope", "auto", "AttributeError: module 'tests.apps.sample' has no attribute 'nope'"),
    ("tests.apps.sample:NOT_AN_APP", "asgi", "TypeError: a int object is not callable"),
])
def test_load_errors_are_one_line_with_the_exception_type(sample, spec, interface, message) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(apps.AppLoadError) as caught:
            apps.load_adapter(spec, interface, 1, loop)
    finally:
        loop.close()
    assert str(caught.value) == message


def test_multiline_errors_are_folded_into_one_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "twolines.py").write_text("raise ValueError('first\\nsecond')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(apps.AppLoadError, match="^ValueError: first second$"):
            apps.load_adapter("twolines:app", "auto", 1, loop)
    finally:
        loop.close()


def test_h11_is_used_when_httptools_cannot_be_imported(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "httptools", None)  # import httptools -> ImportError
    monkeypatch.delitem(sys.modules, "uvicorn.protocols.http.httptools_impl", raising=False)
    assert http.protocol_class().__name__ == "H11Protocol"


def test_wsgi_falls_back_to_uvicorns_adapter_without_a2wsgi(sample, monkeypatch) -> None:
    from uvicorn.middleware import wsgi  # its own, or a2wsgi's when uvicorn >= 0.30 finds it

    monkeypatch.setitem(sys.modules, "a2wsgi", None)
    assert isinstance(wrap_wsgi(sample.wsgi_app).app, wsgi.WSGIMiddleware)


# ---------------------------------------------------------------- serving on loopback
async def _serve(adapter: Any) -> tuple[asyncio.AbstractServer, tuple[str, int]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.get_running_loop().create_server(adapter.protocol_factory, sock=sock)
    return server, sock.getsockname()


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = "/") -> bytes:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return head + await asyncio.wait_for(reader.readexactly(length), 5)


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_hello_app_answers_through_uvicorns_protocol(http) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        adapter = apps.load_adapter(None, "auto", 4, loop)
        if http == "h11":
            from uvicorn.protocols.http.h11_impl import H11Protocol

            adapter = apps.AsgiAdapter(adapter.config.app, loop, protocol=H11Protocol)
        await adapter.startup()
        server, address = await _serve(adapter)
        reader, writer = await asyncio.open_connection(*address)
        for _ in range(2):  # keep-alive: two requests, one connection
            answer = await _request(reader, writer)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.endswith(f"\r\n\r\nhello world from worker 4 (pid {os.getpid()})\n".encode())
        assert (adapter.open, adapter.served) == (1, 2)
        adapter.begin_drain()  # the idle connection stays for one last request...
        last = await _request(reader, writer)
        assert b"\r\nconnection: close\r\n" in last.lower()  # ...answered, then closed
        assert await asyncio.wait_for(reader.read(), 2) == b""
        reader2, writer2 = await asyncio.open_connection(*address)
        await asyncio.sleep(0.05)
        adapter.close_idle()  # after the grace, connections with no request in flight close
        assert await asyncio.wait_for(reader2.read(), 2) == b""
        await asyncio.sleep(0.05)
        assert not adapter.busy() and adapter.open == 0
        writer.close()
        writer2.close()
        server.close()
        await adapter.shutdown()

    asyncio.run(main())


def test_lifespan_startup_and_shutdown_reach_the_app(sample) -> None:
    async def main() -> None:
        adapter = apps.load_adapter("tests.apps.sample:asgi_app", "asgi", 1, asyncio.get_running_loop())
        sample.LIFESPAN_EVENTS.clear()
        await adapter.startup()
        assert sample.LIFESPAN_EVENTS == ["lifespan.startup"]
        await adapter.shutdown()
        assert sample.LIFESPAN_EVENTS == ["lifespan.startup", "lifespan.shutdown"]

    asyncio.run(main())


def test_failed_lifespan_startup_raises(sample) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        adapter = apps.load_adapter("tests.apps.sample:failing_startup_app", "auto", 1, loop)
        with pytest.raises(apps.AppStartupError):
            await adapter.startup()

    asyncio.run(main())


def test_stream_connection_counts_as_served_when_it_closes(sample) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        adapter = apps.load_adapter("tests.apps.sample:stream_handler", "auto", 1, loop)
        assert isinstance(adapter, apps.StreamAdapter)
        server, address = await _serve(adapter)
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"hi\n")
        assert await asyncio.wait_for(reader.read(), 5) == b"HI\n"  # then EOF: handler returned
        await asyncio.sleep(0.05)
        assert (adapter.open, adapter.served) == (0, 1)
        writer.close()
        server.close()

    asyncio.run(main())


def test_wsgi_app_answers(sample) -> None:
    async def main() -> None:
        adapter = apps.load_adapter("tests.apps.sample:wsgi_app", "auto", 1, asyncio.get_running_loop())
        server, address = await _serve(adapter)
        reader, writer = await asyncio.open_connection(*address)
        assert (await _request(reader, writer, "/x")).endswith(b"\r\n\r\nwsgi /x\n")
        writer.close()
        server.close()

    asyncio.run(main())
