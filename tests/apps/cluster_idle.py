"""A sockserve.cluster worker whose ``main`` returns without listening (verifier v15 e6, e4).

``MODE``: ``idle`` (main returns: the worker exits at once, as in Node), ``task`` (main leaves
a task of its own: the worker exits once it is done), ``fork_after`` (the primary forks after
``await cluster.disconnect()`` with no worker, e4). The primary prints one line per event.
"""

import asyncio
import os

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
        cluster.on("exit", lambda w, c, s: print(f"exit {w.id} code={c} sig={s}", flush=True))
        cluster.fork()
    else:
        if MODE == "task":
            tasks.append(asyncio.get_running_loop().create_task(work()))
        print(f"worker {cluster.worker.id} main done", flush=True)


if __name__ == "__main__":
    cluster.run(main)
