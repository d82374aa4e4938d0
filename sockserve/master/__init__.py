"""The master: supervision of workers, listeners, the hand-off path and its policies.

Runs in the master process only (workers never import it).  ``Master`` is the entry.
"""

__all__ = ["Master"]


def __getattr__(name: str):  # lazy: ``sockserve status`` imports only the control client
    if name == "Master":
        from .master import Master

        return Master
    raise AttributeError(name)
