"""Last-known-good models: kept on disk, served when the registry cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.settings import Settings
from registry.client import LoadedModel
from service.app import create_app
from service.infra import model_cache
from tests.support.auth import AUTH
from tests.support.lifecycle import CHURN, REC, lifecycle_settings, publish_full
from tests.support.paths import unreachable_mlflow
from tests.support.scorers import login_churn_model
from tests.support.served import ask

pytestmark = pytest.mark.integration


def test_round_trip_and_damage_is_detected(tmp_path: Path) -> None:
    model = LoadedModel(CHURN, 3, "champion", "run-1", login_churn_model())
    model_cache.save(tmp_path, model)
    back = model_cache.load(tmp_path, CHURN, "champion")
    assert (back.name, back.version, back.alias, back.run_id) == (CHURN, 3, "champion", "run-1")
    record = {"months_since_login": 2}
    assert back.scorer.predict_proba(record) == model.scorer.predict_proba(record)
    # A newer version replaces the older file.
    model_cache.save(tmp_path, LoadedModel(CHURN, 4, "champion", "run-2", login_churn_model()))
    assert [p.name for p in tmp_path.glob("*.pkl")] == [f"{CHURN}@champion-v4.pkl"]
    (tmp_path / f"{CHURN}@champion-v4.pkl").write_bytes(b"tampered")
    with pytest.raises(model_cache.ModelCacheError, match="does not match its hash"):
        model_cache.load(tmp_path, CHURN, "champion")
    with pytest.raises(model_cache.ModelCacheError, match="no cached copy"):
        model_cache.load(tmp_path, REC, "champion")


def test_service_starts_from_the_cache_when_mlflow_is_unreachable(
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    online = lifecycle_settings(settings, tmp_path)
    publish_full(online, redis_client, catalogue)
    with TestClient(create_app(online), headers=AUTH) as client:  # first start: fills the cache
        first = ask(client)
        assert "detail" not in client.get("/readyz").json()
    assert (online.model_cache_dir / f"{REC}@champion.json").is_file()

    # MLflow "down": a tracking server on a port nobody listens on, no retries.
    offline = unreachable_mlflow(online, monkeypatch)
    with TestClient(create_app(offline), headers=AUTH) as client:
        ready = client.get("/readyz")
        body = ask(client)
        metrics = client.get("/metrics").text
        reload = client.post("/admin/reload").json()["results"]
    assert ready.status_code == 200
    assert ready.json()["detail"] == {"recommender": "cache", "churn": "cache"}
    assert body["model_versions"] == first["model_versions"] == {REC: "1", CHURN: "1"}
    assert body["offers"] == first["offers"] and body["degraded"] is False
    assert f'nbo_model_source{{model="{REC}",source="cache"}} 1.0' in metrics
    assert f'nbo_model_source{{model="{CHURN}",source="cache"}} 1.0' in metrics
    # The watcher keeps trying; while the registry is down the cached models keep serving.
    assert {r["outcome"] for r in reload} == {"error"}
