"""Feature records for the decisioning tests: an adult customer's record, customers across
the suitability space, and publishing records as a feature set."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import redis

from core.catalogue import Catalogue
from core.settings import Settings
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from features.record_schema import RecordSchema

TODAY = datetime.now(UTC).date()


def adult(**values: Any) -> dict[str, Any]:
    """A feature record of an adult resident C3 customer with a fresh assessment."""
    base: dict[str, Any] = {
        "age": 40,
        "risk_level": 3,
        "risk_assessed_on": (TODAY - timedelta(days=60)).isoformat(),
        "resident": True,
        "income": 90_000.0,
        "balance": 250_000.0,
        "held": ["current_account"],
        "tier": "affluent",
        "segment": "individuals",
        "preferred_channel": "app",
        "months_since_login": 0,
    }
    base.update(values)
    return base


def varied_customers(count: int, seed: int = 11) -> dict[str, dict[str, Any]]:
    """Customers across the suitability space: every C-level, missing and expired
    assessments, minors, non-residents, low and unknown income and assets; ids ``F0000``,
    ``F0001``, ..."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    for n in range(count):
        assessed = rng.choice([60, 400, 800, None])  # days ago; 800 > 730 is expired
        record: dict[str, Any] = {
            "age": rng.choice([15, 17, 22, 40, 67, 80]),
            "risk_level": rng.choice([1, 2, 3, 4, 5, None]),
            "risk_assessed_on": (TODAY - timedelta(days=assessed)).isoformat()
            if assessed is not None
            else None,
            "resident": rng.random() < 0.8,
            "income": rng.choice([0.0, 15_000.0, 60_000.0, 250_000.0, None]),
            "balance": rng.choice([100.0, 20_000.0, 500_000.0, None]),
            "held": rng.sample(["current_account", "savings_account", "credit_card"], k=1),
            "tier": "mass",
            "segment": "individuals",
            "preferred_channel": "app",
            "months_since_login": rng.choice([0, 1, 3]),
        }
        out[f"F{n:04d}"] = record
    return out


def publish_records(
    settings: Settings,
    client: redis.Redis,
    catalogue: Catalogue,
    records: Mapping[str, dict[str, Any]],
    *,
    as_of: date | None = None,
    feature_names: Iterable[str] | None = None,
    compact: bool = False,
) -> FeatureSetInfo:
    """Write ``records`` as a new feature set (as of 30 days ago by default) and publish it.

    ``compact``: as the materialization writes them (compact records and their schema,
    ``OnlineStore.write_frame``) instead of JSON records.
    """
    store = OnlineStore.for_settings(client, settings)
    created = datetime.now(UTC)
    as_of = as_of or TODAY - timedelta(days=30)
    version = make_version(as_of, created)
    schemas: tuple[RecordSchema, ...] = ()
    if compact:
        frame = pd.DataFrame.from_records(list(records.values()), index=list(records))
        schemas = (store.write_frame(version, frame),)
    else:
        store.write_records(version, records.items())
    info = FeatureSetInfo(
        version=version,
        as_of=as_of,
        created_at=created,
        customers=len(records),
        feature_names=sorted(feature_names if feature_names is not None else adult()),
        catalogue_version=catalogue.version,
        record_schemas=schemas,
    )
    store.publish(info)
    return info
