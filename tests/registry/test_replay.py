"""Replaying recorded decisions with a candidate recommender (pure: no Redis, no MLflow)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson
import pytest
import redis

from cli.registry import recent_decisions
from core.catalogue import Catalogue
from core.redis_keys import decisions_key
from core.scoring.legacy import TwoStageRecommender
from registry.replay import replay
from tests.support.records import TODAY
from tests.support.scorers import popularity_recommender
from tests.support.served import record


def securities_lover(catalogue: Catalogue) -> TwoStageRecommender:
    """Puts securities (R4) first for everyone; every other product ties."""
    base = popularity_recommender(catalogue)
    popularity = np.full(len(base.product_ids), 0.01)
    popularity[base.product_ids.index("securities")] = 0.9
    return dataclasses.replace(base, popularity=popularity)


def decision(features: dict[str, Any] | None, *top: str) -> dict[str, Any]:
    offers = [{"product_id": p, "rank": i, "score": None} for i, p in enumerate(top, start=1)]
    return {"features": features, "offers": offers, "today": TODAY.isoformat()}


def test_replay_counts_changed_and_unsuitable_top_offers(catalogue: Catalogue) -> None:
    decisions = [
        # C1: the candidate's first choice (securities, R4) is unsuitable; the service
        # would serve the first R1 product in catalogue order instead of direct_debit.
        decision(record(risk_level=1), "direct_debit"),
        # C5: securities is suitable and already what was served.
        decision(record(), "securities", "credit_card"),
        # Retention treatments are not model offers: the served model top is securities.
        decision(record(), "deposit_rate_bonus", "securities"),
        decision(None, "direct_debit"),  # no feature record: skipped
    ]
    report = replay(decisions, securities_lover(catalogue), catalogue, validity_days=730)
    assert (report.decisions, report.skipped) == (3, 1)
    assert (report.changed, report.unsuitable) == (1, 1)
    assert report.unsuitable_by_rule == {"suitability": 1}


def test_same_model_changes_nothing(catalogue: Catalogue) -> None:
    model = popularity_recommender(catalogue)  # catalogue backwards: direct_debit first
    report = replay([decision(record(), "direct_debit")], model, catalogue, 730)
    assert (report.decisions, report.changed, report.unsuitable) == (1, 0, 0)


def test_a_control_decision_is_compared_with_the_offers_held_back(catalogue: Catalogue) -> None:
    """A control customer was shown only a treatment; the model's answer is in
    ``holdout_offers``, and the same model serving it again changes nothing."""
    model = popularity_recommender(catalogue)  # direct_debit first
    held_back = decision(record(), "direct_debit")["offers"]
    control = {**decision(record(), "deposit_rate_bonus"), "variant": "control"}
    same = replay([{**control, "holdout_offers": held_back}], model, catalogue, 730)
    assert (same.decisions, same.changed) == (1, 0)
    other = [{"product_id": "credit_card", "rank": 1, "score": None}]
    moved = replay([{**control, "holdout_offers": other}], model, catalogue, 730)
    assert moved.changed == 1


def test_recent_decisions_reads_the_audit_stream_newest_first(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    prefix = f"{key_prefix}:audit"
    key = decisions_key(prefix)
    for n in range(5):
        redis_client.xadd(key, {"d": orjson.dumps({"n": n, "features": {}})})
    redis_client.xadd(key, {"other": b"x"})  # an entry without a decision is ignored
    got = [d["n"] for d in recent_decisions(redis_client, prefix, 4)]
    assert got == [4, 3, 2]
    with pytest.raises(StopIteration):
        next(recent_decisions(redis_client, f"{prefix}:none", 3))
