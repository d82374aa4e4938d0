"""The worker: its runtime (the protocol side), the app adapters, drain, the hello app.

Runs in worker processes only; nothing here imports the master.  Apps use
``from sockserve.worker import current_worker`` (also ``sockserve.current_worker``).
"""

__all__ = ["current_worker"]


def __getattr__(name: str):  # lazy: importing an adapter does not start the runtime
    if name == "current_worker":
        from .runtime import current_worker

        return current_worker
    raise AttributeError(name)
