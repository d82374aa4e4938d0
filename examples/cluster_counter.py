"""Node's request counter (the cluster docs' ``numReqs`` example, seed 000) as a sockserve.cluster
program: the primary forks one worker per CPU and prints ``numReqs = N`` every second; each
worker serves ``hello world`` on port 8000 and tells the primary of every request.

    python examples/cluster_counter.py

Node                                                  here
cluster.isMaster                                      cluster.is_primary
setInterval(() => console.log(...), 1000)             a task printing every second
require('os').cpus().length                           os.cpu_count()
cluster.workers[id].on('message', messageHandler)     the same, in Python
http.Server((req, res) => {...}).listen(8000)         await sockserve.listen(app, 8000) (WSGI app)
process.send({ cmd: 'notifyRequest' })                cluster.worker.send({"cmd": "notifyRequest"})
the program's top level                               async def main(), run by cluster.run(main)
"""

import asyncio
import os

import sockserve
from sockserve import cluster


async def main():
    if cluster.is_primary:
        num_reqs = 0

        async def report():
            while True:
                await asyncio.sleep(1)
                print(f"numReqs = {num_reqs}", flush=True)

        interval = asyncio.create_task(report())  # noqa: F841 - setInterval's timer

        def message_handler(msg):
            nonlocal num_reqs
            if "cmd" in msg and msg["cmd"] == "notifyRequest":
                num_reqs += 1

        num_cpus = os.cpu_count()
        for _ in range(num_cpus):
            cluster.fork()

        for id in cluster.workers:  # noqa: A001 - Node's name
            cluster.workers[id].on("message", message_handler)

    else:
        # Worker processes have a http server.
        def app(environ, start_response):
            start_response("200 OK", [])
            cluster.worker.send({"cmd": "notifyRequest"})
            return [b"hello world\n"]

        await sockserve.listen(app, 8000)


if __name__ == "__main__":
    cluster.run(main)
