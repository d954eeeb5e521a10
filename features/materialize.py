"""Materialization: compute a feature set as of a date and publish it to the online store.

All or nothing: records go under a new version, the ``current`` pointer switches only after
the last one is written, and any failure before the switch deletes the partial version, so
the service keeps serving the previous set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime

import redis

from core.catalogue import Catalogue
from core.moments import MomentsConfig, default_moments
from core.tables import Tables
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from features.pointintime import compute_features

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called after each written batch with ``(records written, records in total)``."""


def materialize(
    tables: Tables,
    as_of: date,
    catalogue: Catalogue,
    store: OnlineStore,
    *,
    batch_size: int = 5000,
    keep_versions: int = 2,
    progress: Progress | None = None,
    moments: MomentsConfig | None = None,
) -> FeatureSetInfo:
    """Compute features as of ``as_of``, write them as a new version, publish, prune.

    ``keep_versions`` counts the new version; keep at least 2 in production, because a
    service may go on reading the previous version until it re-reads the pointer.
    ``moments``: the moment rules (default: the shipped ``core/moments.yaml``); their
    version is recorded in the set's meta.
    Raises ``ValueError`` when ``as_of`` precedes the data or no customer qualifies.
    """
    if keep_versions < 1:
        raise ValueError("keep_versions must be at least 1")
    moments = moments or default_moments()
    frame = compute_features(tables, as_of, catalogue, moments)
    if frame.empty or frame["departed"].astype(bool).all():
        gone = f" (only {len(frame)} who had left)" if len(frame) else ""
        raise ValueError(
            f"no customers of the bank at {as_of:%Y-%m-%d}{gone}: nothing to materialize"
        )
    created_at = datetime.now(UTC)
    info = FeatureSetInfo(
        version=make_version(as_of, created_at),
        as_of=as_of,
        created_at=created_at,
        customers=len(frame),
        feature_names=[str(c) for c in frame.columns],
        catalogue_version=catalogue.version,
        moments_version=moments.version,
    )
    total = len(frame)
    report = (lambda written: progress(written, total)) if progress is not None else None
    try:
        schema = store.write_frame(info.version, frame, report, batch_size=batch_size)
        info = replace(info, record_schemas=(schema,))
        store.publish(info)
    except BaseException:
        _abort_quietly(store, info.version)
        raise
    log.info("published feature set %s (%d customers)", info.version, info.customers)
    try:
        store.prune(keep_versions)
    except redis.RedisError:
        # The new set is live and complete; old versions are pruned by the next run.
        log.exception("feature set %s published, but pruning old versions failed", info.version)
    return info


def _abort_quietly(store: OnlineStore, version: str) -> None:
    """Delete the partial version without hiding the error that caused the abort.

    If the pointer did switch (publish failed after the switch was applied), the version
    is complete and current, and ``abort`` refuses to delete it.
    """
    try:
        store.abort(version)
    except Exception:
        log.exception("could not delete partial feature set %s", version)
