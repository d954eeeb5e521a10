"""``core.object_tables.ObjectTable``: values by owner identity and key, bounded."""

from __future__ import annotations

from core.object_tables import ObjectTable


class Owner:
    """Unhashable by content, like a catalogue: only identity tells two apart."""

    __hash__ = None  # type: ignore[assignment]


def test_a_value_is_built_once_per_owner_and_key() -> None:
    table: ObjectTable[list[int]] = ObjectTable(8)
    owner, built = Owner(), []

    def build() -> list[int]:
        built.append(1)
        return [len(built)]

    first = table.get((owner,), "app", build)
    assert table.get((owner,), "app", build) is first
    assert table.get((owner,), "sms", build) == [2]
    assert len(built) == 2


def test_another_object_gets_its_own_entry_even_when_it_reuses_an_id() -> None:
    table: ObjectTable[str] = ObjectTable(8)
    old, new = Owner(), Owner()
    table.get((old,), None, lambda: "old")
    assert table.get((new,), None, lambda: "new") == "new"
    # An entry keeps its owners alive; a new object at a reused id still fails the identity check.
    entries = table._entries
    _ids, (owners, value) = next(iter(entries.items()))
    entries[(id(new), None)] = (owners, value)  # as if ``new`` had ``old``'s id
    assert table.get((new,), None, lambda: "rebuilt") == "rebuilt"


def test_the_table_is_emptied_past_its_limit() -> None:
    table: ObjectTable[int] = ObjectTable(3)
    owner = Owner()
    for key in range(3):
        table.get((owner,), key, lambda key=key: key)
    assert len(table) == 3
    assert table.get((owner,), 99, lambda: 99) == 99
    assert len(table) == 1
