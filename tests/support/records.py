"""Feature records for the decisioning tests: an adult customer's record, and publishing
records as a feature set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from core.catalogue import Catalogue
from core.settings import Settings
from features.online_store import FeatureSetInfo, OnlineStore, make_version

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


def publish_records(
    settings: Settings,
    client: redis.Redis,
    catalogue: Catalogue,
    records: Mapping[str, dict[str, Any]],
    *,
    as_of: date | None = None,
    feature_names: Iterable[str] | None = None,
) -> FeatureSetInfo:
    """Write ``records`` as a new feature set (as of 30 days ago by default) and publish it."""
    store = OnlineStore.for_settings(client, settings)
    created = datetime.now(UTC)
    as_of = as_of or TODAY - timedelta(days=30)
    info = FeatureSetInfo(
        version=make_version(as_of, created),
        as_of=as_of,
        created_at=created,
        customers=len(records),
        feature_names=sorted(feature_names if feature_names is not None else adult()),
        catalogue_version=catalogue.version,
    )
    store.write_records(info.version, records.items())
    store.publish(info)
    return info
