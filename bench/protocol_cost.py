"""CPU per keep-alive request of uvicorn's httptools protocol, bare and wrapped by worker/limits.py.

    .venv/bin/python bench/protocol_cost.py            # 5 alternating runs of 15000 requests each

Also prints the function calls per request (cProfile's count over 5000 requests): the same on
every run, whatever the load, so it shows a change the CPU times on a busy box hide.

One process, one uvloop loop, a socketpair: a client protocol sends the next request when
the previous answer is in.  Process CPU time per request (client and server together) is
far less noisy on a shared box than wrk's req/s, and the difference between the two is
what the limits wrapper costs per request (issue 14's keep-alive regression).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's sockserve

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"


class _Client(asyncio.Protocol):
    def __init__(self, count: int, done: asyncio.Future[None]) -> None:
        self.left, self.done = count, done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        if data.endswith(b")\n"):  # the hello body's end: "... (pid N)\n"
            self.left -= 1
            if self.left <= 0:
                self.done.set_result(None)
            else:
                self.transport.write(REQUEST)


def _calls(wrapped: bool, count: int = 5000) -> float:
    """Function calls (Python and builtin) per request, counted by cProfile: deterministic."""
    import cProfile
    import pstats

    import uvloop

    loop = uvloop.new_event_loop()
    try:
        profile = cProfile.Profile()
        profile.enable()
        loop.run_until_complete(_measure(wrapped, count))
        profile.disable()
    finally:
        loop.close()
    return pstats.Stats(profile).total_calls / count


async def _measure(wrapped: bool, count: int) -> float:
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from sockserve.worker import limits
    from sockserve.worker.hello import make_hello_app

    loop = asyncio.get_running_loop()
    config = uvicorn.Config(make_hello_app(0, 1), http="httptools", loop="none", log_level="warning",
                            access_log=False)
    config.load()
    cls = limits.guarded(HttpToolsProtocol, limits.HttpLimits()) if wrapped else HttpToolsProtocol
    state = ServerState()
    server_end, client_end = socket.socketpair()
    await loop.connect_accepted_socket(lambda: cls(config=config, server_state=state, app_state={}),
                                       server_end)
    done = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _Client(count, done), sock=client_end)
    started = time.process_time()
    await asyncio.wait_for(done, timeout=120)
    used = time.process_time() - started
    transport.close()
    return used / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=15000)
    args = parser.parse_args(argv)
    import uvloop

    got: dict[str, list[float]] = {"bare": [], "limits": []}
    for _ in range(args.runs):
        for name in got:  # alternated, so a drift of the machine hits both alike
            loop = uvloop.new_event_loop()
            try:
                got[name].append(loop.run_until_complete(_measure(name == "limits", args.requests)))
            finally:
                loop.close()
    for name, values in got.items():
        print(f"{name}: {statistics.median(values):.1f} µs CPU per request (client + server), "
              f"runs {', '.join(f'{v:.1f}' for v in values)}")
    print(f"limits wrapper: +{statistics.median(got['limits']) - statistics.median(got['bare']):.1f} µs "
          "per request (medians)")
    calls = {name: _calls(name == "limits") for name in got}
    print(f"function calls per request: bare {calls['bare']:.1f}, limits {calls['limits']:.1f} "
          f"(+{calls['limits'] - calls['bare']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
