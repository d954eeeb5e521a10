"""Values worked out from long-lived objects, kept while those objects are in use.

The request path keeps several tables of work that depends only on objects a request
shares with every other - a catalogue, a decisioning config, a stage's levers - and on a
few plain values (a channel, a tier). Such objects are not hashable by content (or would
be slow to hash), so a table keys them by ``id``. An entry holds the objects themselves:
their ids cannot be reused while the entry lives, and a reload (new objects) gets entries
of its own. Past ``limit`` entries the table is emptied and refilled as requests come.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ObjectTable(Generic[V]):
    """``build()``'s value per (``owners`` by identity, ``key``), bounded by ``limit``."""

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: dict[tuple[Hashable, ...], tuple[tuple[object, ...], V]] = {}

    def get(self, owners: tuple[object, ...], key: Hashable, build: Callable[[], V]) -> V:
        """The value kept for ``owners`` (compared by identity) and ``key``, or
        ``build()``'s, kept from now on."""
        ids = (*map(id, owners), key)
        known = self._entries.get(ids)
        if known is not None and all(map(_same, known[0], owners)):
            return known[1]
        if len(self._entries) >= self._limit:
            self._entries.clear()
        value = build()
        self._entries[ids] = (owners, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)


def _same(a: object, b: object) -> bool:
    return a is b
