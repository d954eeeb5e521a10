"""The optional ``maturity`` model slot on a real MLflow registry and a real Redis: loaded
like churn, hot reload, refusal of a broken version, last-known-good cache, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.scoring.maturity import INPUT_NAMES, RECORD_INPUTS, MaturityOutflowModel, PlattFold
from core.settings import Settings
from registry.client import Registry
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.lifecycle import CHURN, REC, lifecycle_settings
from tests.support.paths import unreachable_mlflow
from tests.support.records import publish_records
from tests.support.scorers import popularity_recommender
from tests.support.served import AS_OF, CUSTOMERS, ask, record

pytestmark = pytest.mark.integration

MAT = "nbo-maturity"
CONTRACT = {
    "contract": "a" * 32,
    "product": "short_term_deposit",
    "opened_on": "2025-01-15",
    "maturity_date": "2025-04-15",
    "amount": 10_000.0,
}
TODAY = date(2025, 4, 10)


def constant_model(logit: float) -> MaturityOutflowModel:
    """Every contract gets 1 / (1 + exp(-logit)) (zero weights, Platt a=-1, b=0)."""
    fold = PlattFold(weights=(0.0,) * len(INPUT_NAMES), intercept=logit, a=-1.0, b=0.0)
    return MaturityOutflowModel(medians=(0.0,) * len(INPUT_NAMES), folds=(fold,))


def broken_model() -> MaturityOutflowModel:
    """Weights of the wrong length: raises on its first contract, so it must be refused."""
    fold = PlattFold(weights=(0.0,), intercept=0.0, a=-1.0, b=0.0)
    return MaturityOutflowModel(medians=(0.0,) * len(INPUT_NAMES), folds=(fold,))


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Settings:
    """The lifecycle store plus maturity v1 (p=0.5, champion), v2 (p=0.731), v3 (broken)."""
    lifecycle = lifecycle_settings(settings, tmp_path)
    registry = Registry(lifecycle)
    for model in (constant_model(0.0), constant_model(1.0), broken_model()):
        registry.log_and_register(model, MAT, tags={"nbo.kind": "maturity"})
    registry.promote(MAT, 1)
    return lifecycle


def publish(settings: Settings, client: redis.Redis, catalogue: Catalogue) -> None:
    names = {*record(), *popularity_recommender(catalogue).feature_names}
    names |= {*RECORD_INPUTS, "maturities"}
    publish_records(settings, client, catalogue, CUSTOMERS, as_of=AS_OF, feature_names=names)


@pytest.fixture
def app_client(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[TestClient]:
    publish(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH) as client:
        yield client


def scorer_of(client: TestClient) -> Any:
    return client.app.state.runtime.state.current.maturity_scorer  # type: ignore[attr-defined]


def reload(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.post("/admin/reload")
    assert response.status_code == 200, response.text
    return {r["slot"]: r for r in response.json()["results"]}


def test_the_champion_is_loaded_and_reported(app_client: TestClient) -> None:
    scorer = scorer_of(app_client)
    assert scorer.outflow_probability({}, CONTRACT, TODAY) == 0.5
    assert ask(app_client)["model_versions"] == {REC: "1", CHURN: "1", MAT: "1"}
    metrics = app_client.get("/metrics").text
    assert f'nbo_model_info{{model="{MAT}",version="1"}} 1.0' in metrics
    assert f'nbo_model_source{{model="{MAT}",source="registry"}} 1.0' in metrics


def test_hot_reload_swaps_and_a_broken_version_is_refused(
    app_client: TestClient, served: Settings
) -> None:
    registry = Registry(served)
    registry.promote(MAT, 2, reason="hot reload test")
    result = reload(app_client)["maturity"]
    assert (result["outcome"], result["version"]) == ("swapped", 2)
    expected = constant_model(1.0).outflow_probability({}, CONTRACT, TODAY)
    assert scorer_of(app_client).outflow_probability({}, CONTRACT, TODAY) == expected
    assert abs(expected - 0.7310585786) < 1e-9
    registry.promote(MAT, 3, reason="broken candidate")
    refused = reload(app_client)["maturity"]
    assert (refused["outcome"], refused["version"]) == ("refused", 3)
    assert "smoke input 1: raised ValueError" in refused["detail"]
    assert scorer_of(app_client).outflow_probability({}, CONTRACT, TODAY) == expected
    metrics = app_client.get("/metrics").text
    assert f'nbo_model_reloads_total{{model="{MAT}",outcome="swapped"}} 1.0' in metrics
    assert f'nbo_model_reloads_total{{model="{MAT}",outcome="refused"}} 1.0' in metrics


def test_a_feature_set_without_maturities_refuses_the_model(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    names = {*record(), *popularity_recommender(catalogue).feature_names}
    publish_records(served, redis_client, catalogue, CUSTOMERS, as_of=AS_OF, feature_names=names)
    with TestClient(create_app(served), headers=AUTH) as client:
        Registry(served).promote(MAT, 2, reason="needs maturities")
        result = reload(client)["maturity"]
    assert result["outcome"] == "refused"
    assert "maturities" in result["detail"]


def test_without_a_maturity_model_the_slot_is_empty(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    lifecycle = lifecycle_settings(settings, tmp_path)
    publish(lifecycle, redis_client, catalogue)
    with TestClient(create_app(lifecycle), headers=AUTH) as client:
        assert scorer_of(client) is None
        assert client.get("/readyz").status_code == 200
        assert ask(client)["model_versions"] == {REC: "1", CHURN: "1"}
        assert reload(client)["maturity"]["outcome"] == "unchanged"


def test_last_known_good_copy_serves_when_mlflow_is_down(
    served: Settings,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH):
        pass  # first start: the cache gets the champions
    assert (served.model_cache_dir / f"{MAT}@champion.json").is_file()
    offline = unreachable_mlflow(served, monkeypatch)
    with TestClient(create_app(offline), headers=AUTH) as client:
        ready = client.get("/readyz").json()
        probability = scorer_of(client).outflow_probability({}, CONTRACT, TODAY)
        metrics = client.get("/metrics").text
    assert ready["detail"]["maturity"] == "cache"
    assert probability == 0.5
    assert f'nbo_model_source{{model="{MAT}",source="cache"}} 1.0' in metrics
