"""Keep the serving state's feature set in step with the ``current`` pointer in Redis.

A background task re-reads the pointer (and the precomputed score set's,
``service.infra.score_pointer``) every ``feature_pointer_refresh_seconds`` (never
per request: the request path must stay one Redis round trip). A newly published set is
picked up within one interval; materialization keeps the previous version for a while, so
requests in that window still find their records.
"""

from __future__ import annotations

import asyncio
import logging

import redis

from features.online_store import FeatureSetInfo
from service.infra.log import fields
from service.infra.score_pointer import refresh_score_set
from service.runtime import Runtime

log = logging.getLogger(__name__)

MIN_REFRESH_SECONDS = 0.05
"""Floor of the refresh interval: a setting of 0 (tests) means "quickly", not "busy loop"."""


def refresh_interval(configured_seconds: float) -> float:
    return max(MIN_REFRESH_SECONDS, configured_seconds)


def refresh_feature_pointer(runtime: Runtime) -> FeatureSetInfo | None:
    """Read the pointer once and swap a changed feature set into the serving state.

    On a Redis error the state keeps its feature set (the records are probably just as
    unreachable, and each request reports that itself) and the error is logged.
    """
    try:
        latest = runtime.store.current()
    except (redis.RedisError, ValueError, KeyError) as exc:
        log.warning("feature pointer refresh failed", extra=fields(error=type(exc).__name__))
        if isinstance(exc, redis.RedisError):
            runtime.metrics.observe_redis_error("feature_pointer", exc)
        return runtime.state.current.feature_set
    previous = runtime.state.current.feature_set
    if latest != previous:
        runtime.state.update(lambda state: state.with_feature_set(latest))
        _log_switch(previous, latest, runtime.state.current.catalogue.version)
    return latest


async def keep_feature_pointer_fresh(runtime: Runtime) -> None:
    """Refresh forever (until cancelled), off the event loop."""
    interval = refresh_interval(runtime.settings.feature_pointer_refresh_seconds)
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(refresh_feature_pointer, runtime)
        await asyncio.to_thread(refresh_score_set, runtime)


def _log_switch(
    previous: FeatureSetInfo | None, latest: FeatureSetInfo | None, catalogue_version: str
) -> None:
    if latest is None:
        log.warning("no feature set is published", extra=fields(previous=_version(previous)))
        return
    log.info(
        "feature set switched",
        extra=fields(previous=_version(previous), current=latest.version, as_of=latest.as_of),
    )
    if latest.catalogue_version != catalogue_version:
        log.warning(
            "feature set built with another catalogue version",
            extra=fields(feature_set=latest.catalogue_version, service=catalogue_version),
        )


def _version(info: FeatureSetInfo | None) -> str | None:
    return info.version if info is not None else None
