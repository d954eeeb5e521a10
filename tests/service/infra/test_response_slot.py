"""The optional ``response`` model slot on a real MLflow registry and a real Redis: loaded
like maturity, used by arbitration through the service path (fatigue and channel effect
from contact events, preferred channel in the answer, one Redis read), hot reload, refusal
of a broken version, last-known-good cache, metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.pseudonym import pseudonymiser
from core.scoring.response import ResponseModel
from core.settings import Settings
from registry.client import Registry
from service.api.schemas import EventIn
from service.app import create_app
from service.infra.event_store import store_event
from service.infra.redis_guard import REQUEST_CONNECTION_NAME
from tests.support.auth import AUTH
from tests.support.lifecycle import CHURN, REC, lifecycle_settings, publish_full
from tests.support.paths import unreachable_mlflow
from tests.support.redis_monitor import client_names, monitored, sent_by
from tests.support.response_models import fatigue_model
from tests.support.served import ask

pytestmark = pytest.mark.integration

RESP = "nbo-response"
CUSTOMER = "C5-RICH"


FLAT = (10,) * 6
"""Acceptances of 40 per showing of response v2: no fatigue."""


def broken_model() -> ResponseModel:
    """Asks for an input the service does not compute: must be refused."""
    model = fatigue_model()
    return dataclasses.replace(model, feature_names=[*model.feature_names, "credit_score"])


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Settings:
    """The lifecycle store plus response v1 (fatigue, champion), v2 (no fatigue: ``FLAT``),
    v3 (reads an input the service does not compute)."""
    lifecycle = lifecycle_settings(settings, tmp_path)
    registry = Registry(lifecycle)
    for model in (fatigue_model(), fatigue_model(FLAT), broken_model()):
        registry.log_and_register(model, RESP, tags={"nbo.kind": "response"})
    registry.promote(RESP, 1)
    return lifecycle


@pytest.fixture
def app_client(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[TestClient]:
    publish_full(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH) as client:
        yield client


def event(
    settings: Settings,
    client: redis.Redis,
    n: int,
    kind: str,
    product: str,
    channel: str,
    days_ago: float,
) -> None:
    now = datetime.now(UTC)
    body = EventIn(
        event_id=f"e{n}",
        type=kind,  # type: ignore[arg-type]
        customer_id=CUSTOMER,
        product_id=product,
        request_id="0" * 32,
        channel=channel,  # type: ignore[arg-type]
        timestamp=now - timedelta(days=days_ago),
    )
    store_event(client, settings, body, pseudonymiser(settings)(CUSTOMER), now)


def scorer_of(client: TestClient) -> Any:
    return client.app.state.runtime.state.current.response_scorer  # type: ignore[attr-defined]


def reload(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.post("/admin/reload")
    assert response.status_code == 200, response.text
    return {r["slot"]: r for r in response.json()["results"]}


def priorities(client: TestClient, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Product id -> arbitration entry of every ranked candidate of the recorded decision."""
    assert client.app.state.runtime.audit.flush(timeout=30)  # type: ignore[attr-defined]
    record = client.get(f"/v1/decisions/{body['request_id']}").json()
    return {p["product_id"]: p for p in record["arbitration"]["priorities"]}


def test_the_served_model_lowers_a_tired_offer_and_learns_the_channel(
    app_client: TestClient,
    served: Settings,
    redis_client: redis.Redis,
    redis_url: str,
    key_prefix: str,
) -> None:
    fresh = ask(app_client, CUSTOMER, k=20)
    assert fresh["model_versions"] == {REC: "1", CHURN: "1", RESP: "1"}
    assert fresh["preferred_channel"] == {"channel": "app", "source": "record", "accept_rate": None}
    product = fresh["offers"][0]["product_id"]
    # Three showings of the top offer, all older than the 7-day impression window (no cap),
    # and an acceptance of another product on push (paused afterwards, a push responder).
    for n, days in enumerate((20, 14, 9)):
        event(served, redis_client, n, "shown", product, "app", days)
    event(served, redis_client, 3, "shown", "taxes", "push", 12)
    event(served, redis_client, 4, "accepted", "taxes", "push", 11)

    answers: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    with redis.Redis.from_url(redis_url) as watcher:

        def answer() -> None:
            answers.append(ask(app_client, CUSTOMER, k=20))
            names.update(client_names(watcher))

        seen = monitored(watcher, answer)
    # What the request's own connection sent (background reloads and the audit writer have
    # connections of their own; other tests may share this Redis).
    reads = [c["command"].split()[0] for c in sent_by(seen, names, REQUEST_CONNECTION_NAME)]
    assert reads == ["EVAL"], reads  # record + contact state: still one round trip
    tired = answers[0]
    assert tired["preferred_channel"]["channel"] == "push"
    assert tired["preferred_channel"]["source"] == "responses"
    trace = tired["offers"][0]["reasons"][-1]["text"]
    assert "x P(accept) " in trace and "x channel affinity " in trace
    before, after = priorities(app_client, fresh), priorities(app_client, tired)
    assert after[product]["p_accept"] < before[product]["p_accept"] / 2  # its 4th showing
    assert after[product]["priority"] < before[product]["priority"]
    assert after[product]["channel_affinity"] < 1  # three ignored showings on the app
    # On push, where the customer answers, every candidate scores above its app priority
    # (the shipped push weight 0.8 included).
    on_push = app_client.post(
        "/v1/recommendations", json={"customer_id": CUSTOMER, "channel": "push", "k": 20}
    ).json()
    push = priorities(app_client, on_push)
    assert push[product]["channel_affinity"] > 1
    assert all(push[pid]["priority"] > after[pid]["priority"] for pid in push)


def test_hot_reload_swaps_and_a_broken_version_is_refused(
    app_client: TestClient, served: Settings
) -> None:
    registry = Registry(served)
    registry.promote(RESP, 2, reason="hot reload test")
    result = reload(app_client)["response"]
    assert (result["outcome"], result["version"]) == ("swapped", 2)
    tired = [{"times_shown": 4.0}]  # every other feature unknown
    flat = fatigue_model(FLAT).accept_probabilities(tired).tolist()
    assert scorer_of(app_client).accept_probabilities(tired).tolist() == flat
    assert flat != fatigue_model().accept_probabilities(tired).tolist()
    registry.promote(RESP, 3, reason="broken candidate")
    refused = reload(app_client)["response"]
    assert (refused["outcome"], refused["version"]) == ("refused", 3)
    assert "credit_score" in refused["detail"]
    assert scorer_of(app_client).accept_probabilities(tired).tolist() == flat
    metrics = app_client.get("/metrics").text
    assert f'nbo_model_reloads_total{{model="{RESP}",outcome="swapped"}} 1.0' in metrics
    assert f'nbo_model_reloads_total{{model="{RESP}",outcome="refused"}} 1.0' in metrics
    assert f'nbo_model_info{{model="{RESP}",version="2"}} 1.0' in metrics


def test_without_a_response_model_the_slot_is_empty(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    lifecycle = lifecycle_settings(settings, tmp_path)
    publish_full(lifecycle, redis_client, catalogue)
    with TestClient(create_app(lifecycle), headers=AUTH) as client:
        assert scorer_of(client) is None
        assert client.get("/readyz").status_code == 200
        body = ask(client, CUSTOMER)
        assert body["model_versions"] == {REC: "1", CHURN: "1"}
        assert "P(accept)" not in body["offers"][0]["reasons"][-1]["text"]
        assert reload(client)["response"]["outcome"] == "unchanged"


def test_last_known_good_copy_serves_when_mlflow_is_down(
    served: Settings,
    redis_client: redis.Redis,
    catalogue: Catalogue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish_full(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH):
        pass  # first start: the cache gets the champions
    assert (served.model_cache_dir / f"{RESP}@champion.json").is_file()
    offline = unreachable_mlflow(served, monkeypatch)
    with TestClient(create_app(offline), headers=AUTH) as client:
        ready = client.get("/readyz").json()
        body = ask(client, CUSTOMER)
        metrics = client.get("/metrics").text
    assert ready["detail"]["response"] == "cache"
    assert body["model_versions"][RESP] == "1"
    assert f'nbo_model_source{{model="{RESP}",source="cache"}} 1.0' in metrics
