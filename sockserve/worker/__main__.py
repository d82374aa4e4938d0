"""``python -m sockserve.worker``: the worker process's entry (the master spawns it)."""

from sockserve.worker.main import main

main()
