"""Workers listening on different addresses (verifier v15 e1), under ``POLICY`` rr or none.

``LAYOUT``: ``split`` (worker 1 on ``PORT_A`` only, worker 2 on ``PORT_B`` only), ``mix``
(both on A, only worker 2 on B) or ``release`` (both on A and B).  Each answers ``w<id>``.
The primary prints ``ready native=<bool>`` once every server listens (``native``: the C
hand-off path runs, read from its dispatcher for this test); a line ``close N`` on its
stdin makes worker N close its B server, and the primary prints ``closed N native=<bool>``;
``kill N`` kills worker N (SIGKILL), and the primary prints ``exit N native=<bool>``.
"""

import asyncio
import os
import sys

import sockserve
from sockserve import cluster

LAYOUT = os.environ.get("LAYOUT", "split")
PORTS = {"split": {1: ["PORT_A"], 2: ["PORT_B"]}, "mix": {1: ["PORT_A"], 2: ["PORT_A", "PORT_B"]},
         "release": {1: ["PORT_A", "PORT_B"], 2: ["PORT_A", "PORT_B"]}}[LAYOUT]


def native() -> bool:
    return bool(cluster.side()._pool.dispatcher.native)


def primary() -> None:
    if os.environ.get("POLICY") == "none":
        cluster.scheduling_policy = cluster.SCHED_NONE
    listening = []

    def on_listening(worker, address):
        listening.append((worker.id, address["port"]))
        if len(listening) == sum(map(len, PORTS.values())):
            print(f"ready native={native()}", flush=True)

    def on_stdin():
        line = sys.stdin.readline().split()
        if line[:1] == ["close"]:
            cluster.workers[int(line[1])].send("close B")
        elif line[:1] == ["kill"]:
            cluster.workers[int(line[1])].kill("SIGKILL")

    cluster.on("listening", on_listening)
    cluster.on("message", lambda w, m: print(f"closed {w.id} native={native()}", flush=True))
    cluster.on("exit", lambda w, code, sig: print(f"exit {w.id} native={native()}", flush=True))
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), on_stdin)
    cluster.fork()
    cluster.fork()


async def worker():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return [f"w{cluster.worker.id}\n".encode()]

    servers = {}

    def on_message(message):
        if message == "close B":
            servers.pop("PORT_B").close()
            cluster.worker.send("closed")

    cluster.worker.on("message", on_message)
    for name in PORTS[cluster.worker.id]:
        servers[name] = await sockserve.listen(app, int(os.environ[name]), "127.0.0.1")


async def main():
    if cluster.is_primary:
        primary()
    else:
        await worker()


if __name__ == "__main__":
    cluster.run(main)
