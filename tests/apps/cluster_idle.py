"""A sockserve.cluster worker whose ``main`` returns without listening (verifier v15 e6, e4).

``MODE``: ``idle`` (main returns: the worker exits at once, as in Node), ``task`` (main leaves
a task of its own: the worker exits once it is done), ``fork_after`` (the primary forks after
``await cluster.disconnect()`` with no worker, e4), ``disconnect_waiting`` / ``disconnect_listening``
(the worker says "ready" and then waits in a sleep / in a ``listen()``; the primary disconnects
it on that message: the worker exits though ``main`` still waits, as Node's would).
The primary prints one line per event.
"""

import asyncio
import os

import sockserve
from sockserve import cluster

MODE = os.environ.get("MODE", "idle")
tasks = []


async def work():
    await asyncio.sleep(0.5)
    cluster.worker.send("task done")


async def main():
    if cluster.is_primary:
        if MODE == "fork_after":
            await asyncio.wait_for(cluster.disconnect(), 5)
        cluster.on("message", lambda w, m: print(f"message {w.id} {m}", flush=True))
        if MODE.startswith("disconnect_"):
            cluster.on("message", lambda w, m: cluster.disconnect(lambda: print("disconnected", flush=True)))
        cluster.on("exit", lambda w, c, s: print(f"exit {w.id} code={c} sig={s}", flush=True))
        cluster.fork()
    else:
        if MODE.startswith("disconnect_"):
            cluster.worker.send("ready")
            if MODE == "disconnect_listening":  # its QueryServer goes out before the Disconnect comes
                await sockserve.listen(lambda reader, writer: writer.close(), 0, "127.0.0.1")
            await asyncio.sleep(3600)
        if MODE == "task":
            tasks.append(asyncio.get_running_loop().create_task(work()))
        print(f"worker {cluster.worker.id} main done", flush=True)


if __name__ == "__main__":
    cluster.run(main)
