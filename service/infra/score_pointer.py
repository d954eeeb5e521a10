"""Keep the serving state's precomputed score set in step with its ``current`` pointer.

Read with the feature pointer, off the request path (``service.infra.feature_pointer``):
the request path learns from the serving state whether a score set matches its feature set
and models (``ServingState.precomputed``) and, only then, reads the customer's precomputed
scores inside its one ``EVAL``.
"""

from __future__ import annotations

import logging

import redis

from core.precomputed import ScoreSetInfo, ScoreSetKeys, current_score_set
from service.infra.log import fields
from service.runtime import Runtime

log = logging.getLogger(__name__)


def refresh_score_set(runtime: Runtime) -> ScoreSetInfo | None:
    """Read the score-set pointer once and swap a changed score set into the state.

    On a Redis error (or an unreadable meta) the state keeps the score set it has: a
    score set that does not match is never used, so keeping an old one is harmless.
    """
    keys = ScoreSetKeys(runtime.settings.feature_prefix)
    try:
        latest = current_score_set(runtime.redis, keys)
    except (redis.RedisError, ValueError, KeyError, TypeError) as exc:
        log.warning("score set refresh failed", extra=fields(error=type(exc).__name__))
        return runtime.state.current.score_set
    previous = runtime.state.current.score_set
    if latest != previous:
        runtime.state.update(lambda state: state.with_score_set(latest))
        log.info(
            "score set switched",
            extra=fields(
                current=latest.version if latest is not None else None,
                feature_set=latest.feature_set if latest is not None else None,
            ),
        )
    return latest
