"""Worker 1 listens on ``PORT_A`` only, worker 2 on ``PORT_B`` only (verifier v15 e1).

``POLICY=none``: SCHED_NONE (each worker serves its own address); else SCHED_RR, which
serves neither today (one policy for every handle) and warns once per handle.
"""

import os

import sockserve
from sockserve import cluster


async def main():
    if cluster.is_primary:
        if os.environ.get("POLICY") == "none":
            cluster.scheduling_policy = cluster.SCHED_NONE
        cluster.on("listening", lambda w, a: print(f"listening {w.id} {a['port']}", flush=True))
        cluster.fork()
        cluster.fork()
    else:
        def app(environ, start_response):
            start_response("200 OK", [("Content-Length", "3")])
            return [f"w{cluster.worker.id}\n".encode()]
        port = int(os.environ["PORT_A" if cluster.worker.id == 1 else "PORT_B"])
        await sockserve.listen(app, port, "127.0.0.1")


if __name__ == "__main__":
    cluster.run(main)
