"""Node's first cluster example (seed 004; the cluster docs' opening example): one worker per
CPU, each serving ``hello world`` on port 8000; the primary logs each worker's death from the
``exit`` event (Node 0.6 called it ``death``).

    python examples/cluster_hello.py

Node                                                  here
cluster.isPrimary                                     cluster.is_primary
require('os').availableParallelism()                  os.cpu_count()
cluster.on('exit', (worker, code, signal) => ...)     cluster.on("exit", lambda worker, code, signal: ...)
http.createServer((req, res) => ...).listen(8000)     await sockserve.listen(app, 8000) (WSGI app)
process.pid                                           os.getpid()
the program's top level                               async def main(), run by cluster.run(main)
"""

import os

import sockserve
from sockserve import cluster

num_cpus = os.cpu_count()


async def main():
    if cluster.is_primary:
        print(f"Primary {os.getpid()} is running", flush=True)

        # Fork workers.
        for _ in range(num_cpus):
            cluster.fork()

        cluster.on("exit", lambda worker, code, signal: print(f"worker {worker.process.pid} died",
                                                             flush=True))
    else:
        # Workers can share any TCP connection. In this case it is an HTTP server.
        def app(environ, start_response):
            start_response("200 OK", [])
            return [b"hello world\n"]

        await sockserve.listen(app, 8000)

        print(f"Worker {os.getpid()} started", flush=True)


if __name__ == "__main__":
    cluster.run(main)
