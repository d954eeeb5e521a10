"""A feature record -> the facts the suitability filter needs (``core.suitability``).

Shared by the service (live decisions) and the registry (replaying recorded decisions), so
both read a record the same way.

Values that are missing, of the wrong type or out of range become ``None`` (unknown); the
filter never widens what is allowed for an unknown fact, so a malformed record can only
make the answer more cautious.
"""

from __future__ import annotations

import math
from datetime import date

from core.scoring.base import FeatureRecord
from core.suitability import CustomerFacts


def customer_facts(record: FeatureRecord) -> CustomerFacts:
    """Facts of one materialized record (``assets`` is the ``balance`` feature)."""
    resident = record.get("resident")
    return CustomerFacts.of(
        _whole_number(record.get("age")),
        _risk_level(record.get("risk_level")),
        iso_date(record.get("risk_assessed_on")),
        resident if isinstance(resident, bool) else None,
        _amount(record.get("income")),
        _amount(record.get("balance")),
        _product_ids(record.get("held")),
    )


def _whole_number(value: object) -> int | None:
    # bool is an int subclass: True must not read as age 1.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _risk_level(value: object) -> int | None:
    level = _whole_number(value)
    return level if level is not None and 1 <= level <= 5 else None


def iso_date(value: object) -> date | None:
    """An ISO date (or the date part of an ISO timestamp) from a record value; else None."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _amount(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _product_ids(value: object) -> frozenset[str]:
    if not isinstance(value, list | tuple):
        return frozenset()
    return frozenset([item for item in value if isinstance(item, str)])
