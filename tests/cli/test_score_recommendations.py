"""``nbo score recommendations``: the command's output and its bad-input exits (code 2)."""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from core.catalogue import Catalogue
from core.precomputed import ScoreSetKeys, current_score_set
from core.settings import Settings
from tests.support.served import champion_registry, publish_customers, served  # noqa: F401

pytestmark = pytest.mark.integration


def _env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBO_HOME", str(settings.home))
    monkeypatch.setenv("NBO_REDIS_URL", settings.redis_url or "")
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", settings.tracking_uri)
    monkeypatch.setenv("NBO_PSEUDONYM_KEY", settings.pseudonym_key.get_secret_value())
    for name in ("feature", "contact", "events", "audit"):  # cleaned up by the fixture
        monkeypatch.setenv(f"NBO_{name.upper()}_PREFIX", getattr(settings, f"{name}_prefix"))


def test_it_publishes_a_score_set_of_the_live_feature_set(
    served: Settings,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    info = publish_customers(served, redis_client, catalogue)
    _env(served, monkeypatch)
    result = CliRunner().invoke(app, ["score", "recommendations"])
    assert result.exit_code == 0, result.output
    assert f"customers  4 of feature set {info.version}" in result.output
    scored = current_score_set(redis_client, ScoreSetKeys(served.feature_prefix))
    assert scored is not None and scored.feature_set == info.version


def test_without_a_feature_set_it_exits_2_and_writes_nothing(
    served: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(served, monkeypatch)
    result = CliRunner().invoke(app, ["score", "recommendations"])
    assert result.exit_code == 2, result.output
    assert "no feature set is published" in result.output
    assert list(redis_client.scan_iter(match=f"{served.feature_prefix}*")) == []


def test_without_a_champion_it_exits_2_naming_the_model(
    settings: Settings,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish_customers(settings, redis_client, catalogue)
    _env(settings, monkeypatch)  # an empty registry
    result = CliRunner().invoke(app, ["score", "recommendations"])
    assert result.exit_code == 2, result.output
    assert "no recommender to score with" in result.output
    assert current_score_set(redis_client, ScoreSetKeys(settings.feature_prefix)) is None
