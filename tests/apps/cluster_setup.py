"""setup_primary / fork(env) / scheduling_policy for the tests: each worker reports what it got."""

import json
import os
import sys

import sockserve
from sockserve import cluster


def say(*args):
    print(json.dumps(args), flush=True)


async def main():
    if cluster.is_primary:
        cluster.scheduling_policy = cluster.SCHED_NONE
        cluster.on("setup", lambda settings: say("setup", settings["args"], settings["silent"]))
        cluster.on("message", lambda worker, message: say("message", worker.id, message))
        cluster.on("exit", lambda worker, code, signal: say("exit", worker.id, code))
        cluster.setup_primary(args=["one"], cwd=os.environ["WORKER_CWD"], silent=True)
        cluster.fork({"EXTRA": 1})
        cluster.setup_primary(args=["two"], silent=False)
        cluster.fork()
    else:
        print("noise from worker", cluster.worker.id, flush=True)  # not shown when silent
        server = await sockserve.listen(lambda environ, start_response: [], 0, "127.0.0.1")
        cluster.worker.send({"cwd": os.getcwd(), "argv": sys.argv[1:], "extra": os.environ.get("EXTRA"),
                             "shared": bool(cluster.worker._servers), "port": server.address()["port"]})
        cluster.worker.disconnect()


if __name__ == "__main__":
    cluster.run(main)
