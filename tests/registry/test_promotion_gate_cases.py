"""The gate at its edges: margin 0 without per-row values, the recommender's MAP@7, and
``--replay-last`` over decisions the service actually recorded (not a hand-built report).

The rule (registry.promotion) without per-row holdout values: a version may take the alias
when its primary metric is at most ``margin`` below the champion's on the same data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.registry import app as registry_cli
from core.catalogue import Catalogue
from core.scoring.legacy import TwoStageRecommender
from core.settings import Settings, get_settings
from registry import promotion
from registry.client import Registry, VersionInfo
from registry.promotion import PromotionRefused
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.registry import (
    FINGERPRINT,
    HOLDOUT,
    SEEDED_MODEL,
    migrate,
    register_churn,
    registry_settings,
    seeded_store,
)
from tests.support.scorers import login_churn_model, popularity_recommender
from tests.support.served import CUSTOMERS, ask, publish_customers

REC = "nbo-recommender"


def test_margin_zero_promotes_an_equal_metric_and_refuses_anything_below(tmp_path: Path) -> None:
    """Champion (version 1) has roc_auc 0.80; with margin 0 a new version with exactly 0.80
    is no worse, one a hair below is refused."""
    registry = Registry(registry_settings(tmp_path, seeded_store()))
    equal = register_churn(registry, SEEDED_MODEL, 0.80)
    info, verdict = promotion.promote(registry, SEEDED_MODEL, equal.version, margin=0.0)
    assert verdict.allowed and info.aliases == ["champion"]
    just_below = register_churn(registry, SEEDED_MODEL, np.nextafter(0.80, 0.0))
    with pytest.raises(PromotionRefused, match="worse than the champion"):
        promotion.promote(registry, SEEDED_MODEL, just_below.version, margin=0.0)
    assert registry.alias_version(SEEDED_MODEL, "champion") == equal.version


def securities_first(catalogue: Catalogue) -> TwoStageRecommender:
    """Scores securities (R4) far above everything else for everyone."""
    base = popularity_recommender(catalogue)
    popularity = np.full(len(base.product_ids), 0.01)
    popularity[base.product_ids.index("securities")] = 0.9
    return dataclasses.replace(base, popularity=popularity)


def register_recommender(
    registry: Registry, scorer: TwoStageRecommender, map_at_7: float, roc_auc: float = 0.5
) -> VersionInfo:
    """A recommender evaluated on the common data; ``roc_auc`` is logged too, to show the
    gate reads MAP@7 for this kind."""
    return registry.log_and_register(
        scorer,
        REC,
        params={"holdout_as_of": HOLDOUT},
        metrics={"map_at_7": map_at_7, "roc_auc": roc_auc},
        tags={"nbo.kind": "recommender", "nbo.data_fingerprint": FINGERPRINT},
    )


@pytest.fixture
def gated(settings: Settings, tmp_path: Path, catalogue: Catalogue) -> Iterator[Settings]:
    """``settings`` on a registry of its own: recommender version 1 (MAP@7 0.30) and a churn
    model are champions."""
    db = migrate(tmp_path / "gate.db")
    gated = settings.model_copy(
        update={"mlflow_tracking_uri": f"sqlite:///{db}", "model_poll_seconds": 0.0}
    )
    registry = Registry(gated)
    register_recommender(registry, popularity_recommender(catalogue), 0.30)
    promotion.promote(registry, REC, 1, reason="first")
    churn = registry.log_and_register(login_churn_model(), gated.churn_model_name)
    registry.promote(gated.churn_model_name, churn.version)
    yield gated


def test_the_recommender_is_gated_on_map_at_7(gated: Settings, catalogue: Catalogue) -> None:
    registry = Registry(gated)
    worse = register_recommender(registry, popularity_recommender(catalogue), 0.25, roc_auc=0.99)
    with pytest.raises(PromotionRefused, match=r"map_at_7 0.2500 is worse .* 0.3000"):
        promotion.promote(registry, REC, worse.version)
    equal = register_recommender(registry, popularity_recommender(catalogue), 0.30, roc_auc=0.1)
    assert promotion.promote(registry, REC, equal.version)[1].allowed
    assert registry.alias_version(REC, "champion") == equal.version


@pytest.fixture
def cli_env(gated: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The ``nbo`` CLI reads ``gated`` from the environment."""
    for name, value in {
        "NBO_HOME": str(gated.home),
        "NBO_MLFLOW_TRACKING_URI": gated.tracking_uri,
        "NBO_REDIS_URL": str(gated.redis_url),
        "NBO_AUDIT_PREFIX": gated.audit_prefix,
        "NBO_ACTOR": "gate-test",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_replay_last_reads_the_decisions_the_service_recorded(
    gated: Settings,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    cli_env: CliRunner,
) -> None:
    """The service answers the four ``CUSTOMERS`` and records its decisions; ``--replay-last``
    replays exactly those. A candidate that puts securities (R4) first would push it to the
    three whose assessment does not cover R4 (hand count: C1, C3, and a C5 whose assessment
    expired today) - refused; an equally scored harmless candidate is promoted."""
    publish_customers(gated, redis_client, catalogue)
    with TestClient(create_app(gated), headers=AUTH) as client:
        answered = {ask(client, customer)["request_id"] for customer in CUSTOMERS}
        assert client.app.state.runtime.audit.flush(timeout=60)  # type: ignore[attr-defined]
    assert len(answered) == len(CUSTOMERS)
    registry = Registry(gated)
    risky = register_recommender(registry, securities_first(catalogue), 0.35)
    harmless = register_recommender(registry, popularity_recommender(catalogue), 0.35)

    refused = cli_env.invoke(
        registry_cli, ["promote", REC, str(risky.version), "--replay-last", "50"]
    )
    assert refused.exit_code == 2, refused.output
    assert f"{len(CUSTOMERS)} decisions (0 skipped" in refused.output
    assert "unsuitable first choice in 3 (suitability: 3)" in refused.output
    assert "3 top offers would be unsuitable" in refused.output
    assert registry.alias_version(REC, "champion") == 1

    promoted = cli_env.invoke(
        registry_cli, ["promote", REC, str(harmless.version), "--replay-last", "50"]
    )
    assert promoted.exit_code == 0, promoted.output
    assert f"{len(CUSTOMERS)} decisions (0 skipped" in promoted.output
    assert "top offer changed in 0, unsuitable first choice in 0" in promoted.output
    assert registry.alias_version(REC, "champion") == harmless.version
