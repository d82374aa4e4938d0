"""Steps that drive a real Supervisor (the pure lifecycle core) in unit tests."""

from __future__ import annotations

from sockserve.master import lifecycle as L


def of(actions: list[L.Action], kind: type) -> list:
    """The actions of ``kind``, in order."""
    return [a for a in actions if isinstance(a, kind)]


def listen(core, *workers: int) -> list[L.Action]:
    """Each worker comes online and listens (the cluster protocol's Online, Listening): the actions."""
    out: list[L.Action] = []
    for w in workers:
        out += core.handle(L.Online(w)) + core.handle(L.Listening(w))
    return out
