"""Node's classic cluster example in Python: workers report each request to the
master with a user message; the master prints the count every second.
(This is the service's form, through the sockserve command and --hooks; the same program
written like Node's, one script for the primary and its workers, is cluster_counter.py.)

    sockserve --workers 2 --hooks examples.counter:setup_master examples.counter:app
    python -m examples.counter          # the same, from Python

Node:  process.send({cmd: 'notifyRequest'})  /  cluster.workers[id].on('message', ...)
here:  current_worker().send({...})         /  master.on("message", ...)
"""

from __future__ import annotations

import asyncio

import sockserve


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]})
    await send({"type": "http.response.body", "body": b"hello world\n"})
    sockserve.current_worker().send({"cmd": "notifyRequest"})


def setup_master(master) -> None:
    """Called in the master, in its event loop, before the workers start."""
    requests = 0

    def on_message(worker, message):
        nonlocal requests
        if isinstance(message, dict) and message.get("cmd") == "notifyRequest":
            requests += 1

    async def report():
        while True:
            await asyncio.sleep(1)
            print(f"numReqs = {requests}", flush=True)

    master.on("message", on_message)
    asyncio.get_running_loop().create_task(report())


if __name__ == "__main__":
    from sockserve.logs import setup_logging

    setup_logging("stderr", "info")
    config = sockserve.make_config({"app": "examples.counter:app", "workers": 2,
                                    "hooks": "examples.counter:setup_master"})
    raise SystemExit(sockserve.Master(config).run())
