"""A sockserve.cluster program for the tests: one JSON line per event the primary sees.

Environment (workers inherit it): ``WORKERS`` (how many to fork), ``LISTEN`` (``;``-separated
``KIND:key=value,...`` with KIND http or echo and the listen() arguments), ``SCENARIO`` (what
the primary does once every worker listens on everything: serve, kill, disconnect,
cluster_disconnect, crash, close, close_one, ping, respawn, leave).
"""

import asyncio
import json
import os
import socket

import sockserve
from sockserve import cluster

SCENARIO = os.environ.get("SCENARIO", "serve")
WORKERS = int(os.environ.get("WORKERS", "1"))
tasks = []
LISTEN = [spec for spec in os.environ.get("LISTEN", "http:port=0,host=127.0.0.1").split(";") if spec]
# no LISTEN: a worker with only a message listener (Node keeps such a worker alive)


def say(*args):
    print(json.dumps(args), flush=True)


def app(environ, start_response):
    body = f"hello from worker {cluster.worker.id}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def arguments(spec):
    kind, _, args = spec.partition(":")
    kwargs = dict(pair.split("=", 1) for pair in args.split(",") if pair)
    if "port" in kwargs:
        kwargs["port"] = int(kwargs["port"])
    return {"http": app, "echo": echo}[kind], kwargs


def act(worker):
    if SCENARIO == "kill":
        worker.kill()
    elif SCENARIO == "disconnect":
        worker.disconnect()
    elif SCENARIO == "cluster_disconnect":
        cluster.disconnect(lambda: say("done", len(cluster.workers)))
    elif SCENARIO in ("ping", "leave"):
        worker.send(SCENARIO)
    elif SCENARIO in ("crash", "close", "close_one", "respawn"):
        worker.send("close" if SCENARIO.startswith("close") else "crash")
    else:
        say("native", cluster.side()._pool.dispatcher.native)  # the C hand-off path is on
        say("ready")


def primary():
    listening = {}

    def on_listening(worker, address):
        listening.setdefault(worker.id, []).append(address)
        if SCENARIO == "respawn" and worker.id == 2:  # the replacement serves
            say("ready")
        elif sum(len(a) for a in listening.values()) == WORKERS * len(LISTEN):
            act(cluster.workers[min(cluster.workers)])

    def on_exit(worker, code, signal):
        say("exit", worker.id, code, signal, worker.exited_after_disconnect, worker.is_dead(),
            worker.id in cluster.workers, worker.state)
        if SCENARIO == "respawn" and worker.id == 1:  # Node's docs: fork again from "exit"
            cluster.fork()

    def on_message(worker, message):
        say("message", worker.id, message)
        if message == "pong":
            worker.disconnect()
        if isinstance(message, dict) and "closed" in message:
            try:
                socket.create_connection(("127.0.0.1", message["closed"]), timeout=2).close()
                say("released", False)
            except ConnectionRefusedError:
                say("released", True)
            if SCENARIO == "close_one":  # the other listener serves on
                say("ready")
            else:
                worker.disconnect()

    cluster.on("fork", lambda worker: say("fork", worker.id))
    cluster.on("online", lambda worker: say("online", worker.id))
    if not LISTEN:  # a worker that serves nothing: act once it is online
        cluster.on("online", act)
    cluster.on("listening", lambda worker, address: say("listening", worker.id, address))
    cluster.on("listening", on_listening)
    cluster.on("message", on_message)
    cluster.on("disconnect", lambda worker: say("disconnect", worker.id, worker.id in cluster.workers))
    cluster.on("exit", on_exit)
    for _ in range(WORKERS):
        worker = cluster.fork()
        worker.on("online", lambda w=worker: say("worker.online", w.id))
        worker.on("disconnect", lambda w=worker: say("worker.disconnect", w.id))
        worker.on("exit", lambda code, signal, w=worker: say("worker.exit", w.id, code, signal))


async def worker_main():
    servers, listening = [], asyncio.Event()

    async def close():
        await listening.wait()  # the primary may see "listening" before listen() returned here
        port = servers[0].address()["port"]
        servers[0].close()
        cluster.worker.send({"closed": port})

    def on_message(message):
        if message == "crash":
            os._exit(3)
        if message == "ping":
            cluster.worker.send("pong")
        if message == "leave":  # Node's worker.disconnect() in a worker
            cluster.worker.disconnect()
        if message == "close":
            tasks.append(asyncio.get_running_loop().create_task(close()))

    cluster.worker.on("message", on_message)  # first: the primary may write once we listen
    for handler, kwargs in map(arguments, LISTEN):
        servers.append(await sockserve.listen(handler, **kwargs))
    listening.set()


async def main():
    if cluster.is_primary:
        primary()
    else:
        await worker_main()


if __name__ == "__main__":
    cluster.run(main)
