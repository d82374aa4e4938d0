"""sockserve: Node.js's cluster for Python, as a systemd socket-activated service.

Master side: ``Master(config)``, ``master.on(event, callback)``, ``master.workers``.
Worker side: ``current_worker()`` (None in the master), ``worker.send()``, ``worker.on("message")``.
Node's cluster as a library: ``sockserve.cluster`` and, in its workers, ``await sockserve.listen(app,
port=8000)`` (docs/node-cluster.md).
"""

__version__ = "0.1.0"
__all__ = ["Config", "Master", "current_worker", "listen", "make_config", "__version__"]


def __getattr__(name: str):  # lazy: workers and the CLI import only what they use
    if name == "Master":
        from .master.master import Master

        return Master
    if name in ("Config", "make_config"):
        from . import config

        return getattr(config, name)
    if name == "listen":
        from .worker.child import listen

        return listen
    if name == "current_worker":
        from .worker.runtime import current_worker

        return current_worker
    raise AttributeError(name)
