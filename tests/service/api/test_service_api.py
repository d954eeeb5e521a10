"""The service end to end over HTTP: a real Redis, a real MLflow registry in a temp dir.

The models are the project's real scorer classes (``core.scoring``) with hand-set weights,
so every expected answer below can be worked out by hand from the catalogue:

* recommender: the score of a product rises with its popularity, and popularity rises
  along the catalogue's file order - so the ranking is the catalogue read backwards,
  minus whatever suitability and eligibility exclude;
* churn: probability ``sigmoid(2 * months_since_login - 3)``: 0.05 (low) for a customer
  who logged in this month, 0.95 (high) after three months without a login.
"""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

import gc
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.embedded_redis import start_embedded_redis, stop_embedded_redis
from core.settings import Settings
from features.online_store import FeatureSetInfo
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.paths import free_port
from tests.support.served import (  # noqa: F401 (fixtures)
    AS_OF,
    VALID_REQUEST,
    ask,
    champion_registry,
    live,
    offered,
    publish_customers,
    served,
)

pytestmark = pytest.mark.integration


# -- personal recommendations -------------------------------------------------------------


def test_known_customer_gets_suitable_offers_in_priority_order(
    live: tuple[TestClient, FeatureSetInfo], catalogue: Catalogue
) -> None:
    client, info = live
    body = ask(client, "C5-RICH", k=4)
    # Arbitration: propensity x business value (app weight 1, no levers). Investments
    # (securities, funds, derivatives) and R3+ lending (mortgage, guarantees) are
    # advisor-only, so a C5 customer on the app gets pension_plan (value 3) first.
    assert offered(body) == ["pension_plan", "loans", "credit_card", "payroll"]
    assert [o["rank"] for o in body["offers"]] == [1, 2, 3, 4]
    for offer in body["offers"]:
        value = catalogue.get(offer["product_id"]).business_value
        assert offer["priority"] == pytest.approx(offer["score"] * value)
    priorities = [o["priority"] for o in body["offers"]]
    assert priorities == sorted(priorities, reverse=True)
    assert all(o["reasons"] and o["reasons"][0]["code"] for o in body["offers"])
    assert uuid.UUID(hex=body["request_id"]).version == 4
    assert body["customer_id"] == "C5-RICH"
    assert body["channel"] == "app"
    assert body["model_versions"] == {"nbo-recommender": "1", "nbo-churn": "1"}
    assert body["feature_set"] == {"version": info.version, "as_of": AS_OF.isoformat()}
    assert body["churn_risk"]["band"] == "low"
    assert body["degraded"] is False
    assert body["degraded_reason"] is None


def test_c1_customer_never_gets_above_r1(
    live: tuple[TestClient, FeatureSetInfo], catalogue: Catalogue
) -> None:
    client, _ = live
    body = ask(client, "C1-CAUTIOUS", k=20)
    assert offered(body)[:4] == ["payroll", "medium_term_deposit", "direct_debit", "e_account"]
    assert all(catalogue.get(pid).risk_level == 1 for pid in offered(body))
    assert "current_account" not in offered(body)  # held


def test_assessment_expired_since_materialization_counts_as_expired(
    live: tuple[TestClient, FeatureSetInfo], catalogue: Catalogue
) -> None:
    client, _ = live
    body = ask(client, "C5-EXPIRED-SINCE", k=20)
    assert body["offers"]
    assert all(catalogue.get(pid).risk_level == 1 for pid in offered(body))
    assert body["degraded"] is False


def test_high_churn_risk_puts_retention_first(live: tuple[TestClient, FeatureSetInfo]) -> None:
    """Retention priority = churn 0.95 x value x boost 10 outranks any cross-sell."""
    client, _ = live
    body = ask(client, "C3-LEAVING", k=4)
    assert body["churn_risk"]["band"] == "high"
    assert body["churn_risk"]["probability"] == pytest.approx(0.9526, abs=1e-3)
    assert body["churn_risk"]["reasons"][0]["code"] == "months_since_login"
    # Retention by business value (same churn probability and boost), then cross-sell.
    assert offered(body) == ["deposit_rate_bonus", "advisor_callback", "fee_waiver", "pension_plan"]
    assert body["offers"][0]["reasons"][0] == {
        "code": "retention",
        "text": "retention priority: churn risk high",
    }
    assert body["offers"][0]["reasons"][1]["code"] == "arbitration"
    assert "retention boost 10" in body["offers"][0]["reasons"][1]["text"]
    assert body["offers"][0]["score"] is None


# -- degraded answers ---------------------------------------------------------------------

UNRESTRICTED_R1 = ["direct_debit", "current_account", "savings_account"]
"""The only holdable R1 products without age, residency, income or assets rules, most
popular first (junior_account has an age limit; home_account is withdrawn)."""


def test_unknown_customer_gets_the_r1_fallback(live: tuple[TestClient, FeatureSetInfo]) -> None:
    client, info = live
    body = ask(client, "NOBODY-42", k=10)
    assert body["degraded"] is True
    assert body["degraded_reason"] == "unknown_customer"
    assert offered(body) == UNRESTRICTED_R1
    assert body["offers"][0]["reasons"][0]["code"] == "popular"
    assert body["churn_risk"] is None
    assert body["feature_set"]["version"] == info.version


def test_no_feature_set_then_one_is_published(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    with TestClient(create_app(served), headers=AUTH) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["type"] == "not_ready"
        assert ready.json()["detail"]["missing"] == ["feature_set"]
        body = ask(client, "C5-RICH")
        assert body["degraded_reason"] == "no_feature_set"
        assert body["feature_set"] is None
        assert offered(body) == UNRESTRICTED_R1[:3]

        publish_customers(served, redis_client, catalogue)
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "published feature set never picked up"
            time.sleep(0.05)
        assert client.get("/readyz").json() == {
            "ready": True,
            "checks": {"recommender_model": True, "feature_set": True, "redis": True},
            "missing": [],
        }
        assert ask(client, "C5-RICH")["degraded"] is False


def test_startup_objects_are_frozen_out_of_garbage_collection_while_serving(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    """A full collection would walk every object of the loaded libraries and models,
    stalling every request waiting meanwhile; while the app serves, they are frozen."""
    publish_customers(served, redis_client, catalogue)
    gc.unfreeze()
    with TestClient(create_app(served), headers=AUTH) as client:
        assert gc.get_freeze_count() > 100_000
        assert ask(client, "C1-CAUTIOUS")["offers"]
    assert gc.get_freeze_count() == 0  # collectable again once the app stops


def test_without_a_recommender_the_service_starts_degraded(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    """``settings`` points at an empty registry: no champion of either model."""
    publish_customers(settings, redis_client, catalogue)
    with TestClient(create_app(settings), headers=AUTH) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"]["missing"] == ["recommender_model"]
        body = ask(client, "C1-CAUTIOUS", k=10)
        assert body["degraded_reason"] == "no_model"
        assert body["model_versions"] == {}
        assert body["churn_risk"] is None
        # The record is known, so its facts still apply: current_account is held,
        # pension_payroll needs age 55. The order is the catalogue's business value (ties
        # in file order): 2.0, 1.8, then the 1.5s.
        assert offered(body)[:5] == [
            "payroll_account",
            "medium_term_deposit",
            "particular_plus_account",
            "short_term_deposit",
            "payroll",
        ]
        assert "current_account" not in offered(body)
        assert "pension_payroll" not in offered(body)
        assert body["offers"][0]["reasons"][0]["code"] == "low_risk_default"


@pytest.mark.faults
def test_redis_down_answers_with_the_fallback(
    served: Settings, catalogue: Catalogue, tmp_path: Path
) -> None:
    """A Redis of its own, stopped while the service runs."""
    port = free_port()
    url = start_embedded_redis(port, tmp_path / "redis", persist=False)
    own = served.model_copy(update={"redis_url": url})
    client = redis.Redis.from_url(url)
    try:
        publish_customers(own, client, catalogue)
        with TestClient(create_app(own), headers=AUTH) as http:
            assert ask(http, "C5-RICH")["degraded"] is False
            stop_embedded_redis(port)
            body = ask(http, "C5-RICH", k=10)
            assert body["degraded_reason"] == "feature_store_unavailable"
            assert offered(body) == UNRESTRICTED_R1
            assert body["feature_set"] is None
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert "redis" in ready.json()["detail"]["missing"]
    finally:
        client.close()
        stop_embedded_redis(port)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "error_type"),
    [
        ({"segment": "x"}, "segment", "extra_forbidden"),
        ({"k": 0}, "k", "greater_than_equal"),
        ({"k": 21}, "k", "less_than_equal"),
        ({"k": "3"}, "k", "int_type"),
        ({"k": 2.5}, "k", "int_type"),
        ({"channel": "fax"}, "channel", "literal_error"),
        ({"customer_id": 123}, "customer_id", "string_type"),
        ({"customer_id": ""}, "customer_id", "string_too_short"),
        ({"customer_id": "x" * 65}, "customer_id", "string_too_long"),
        ({"customer_id": "a b"}, "customer_id", "string_pattern_mismatch"),
        ({"channel": None}, "channel", "literal_error"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(
    live: tuple[TestClient, FeatureSetInfo], change: dict[str, Any], field: str, error_type: str
) -> None:
    client, _ = live
    response = client.post("/v1/recommendations", json={**VALID_REQUEST, **change})
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "validation_error"
    assert [(e["loc"], e["type"]) for e in body["detail"]] == [(["body", field], error_type)]


def test_missing_field_is_named(live: tuple[TestClient, FeatureSetInfo]) -> None:
    client, _ = live
    response = client.post("/v1/recommendations", json={"customer_id": "C5-RICH"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "channel"]]


def test_k_defaults_to_three(live: tuple[TestClient, FeatureSetInfo]) -> None:
    client, _ = live
    response = client.post("/v1/recommendations", json={"customer_id": "C5-RICH", "channel": "sms"})
    assert len(response.json()["offers"]) == 3


def test_unknown_path_uses_the_error_shape(live: tuple[TestClient, FeatureSetInfo]) -> None:
    client, _ = live
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.json() == {"type": "not_found", "detail": "Not Found"}


# -- operations ---------------------------------------------------------------------------


def test_health_and_openapi(live: tuple[TestClient, FeatureSetInfo]) -> None:
    client, _ = live
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    schema = client.get("/openapi.json").json()
    request_schema = schema["components"]["schemas"]["RecommendationRequest"]
    assert request_schema["additionalProperties"] is False
    assert request_schema["properties"]["customer_id"]["description"]
    assert client.get("/docs").status_code == 200


# -- control group (NBO_CONTROL_SHARE): held out of cross-sell, service treatments kept --


def _answer_and_record(client: TestClient, customer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = ask(client, customer, k=4)
    assert client.app.state.runtime.audit.flush(timeout=60)  # type: ignore[attr-defined]
    found = client.get(f"/v1/decisions/{body['request_id']}")
    assert found.status_code == 200, found.text
    record: dict[str, Any] = found.json()
    return body, record


def test_control_customers_get_no_cross_sell_but_keep_retention(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    # The same customers without control first: what they would be offered (the oracle).
    publish_customers(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH) as client:
        normal_rich = ask(client, "C5-RICH", k=4)
        normal_leaving = ask(client, "C3-LEAVING", k=4)
    assert normal_rich["variant"] == "champion" and normal_rich["withheld_reason"] is None
    assert offered(normal_leaving) == [
        "deposit_rate_bonus",
        "advisor_callback",
        "fee_waiver",
        "pension_plan",
    ]

    everyone = served.model_copy(update={"control_share": 1.0})
    with TestClient(create_app(everyone), headers=AUTH) as client:
        rich, rich_record = _answer_and_record(client, "C5-RICH")
        leaving, leaving_record = _answer_and_record(client, "C3-LEAVING")
        metrics = client.get("/metrics").text

    # No proactive cross-sell offer, and the answer says why.
    assert (rich["variant"], rich["offers"], rich["withheld_reason"]) == (
        "control",
        [],
        "control_group",
    )
    assert rich_record["variant"] == "control"
    assert rich_record["withheld_reason"] == "control_group"
    assert rich_record["offers"] == []
    assert [o["product_id"] for o in rich_record["holdout_offers"]] == offered(normal_rich)
    assert_every_product_accounted_once(rich_record, catalogue)

    # Churn retention (a service treatment) is still served, re-ranked; cross-sell is not.
    assert leaving["variant"] == "control"
    assert offered(leaving) == ["deposit_rate_bonus", "advisor_callback", "fee_waiver"]
    assert [o["rank"] for o in leaving["offers"]] == [1, 2, 3]
    assert all(o["trigger"] == "churn" for o in leaving["offers"])
    assert [o["product_id"] for o in leaving_record["holdout_offers"]] == ["pension_plan"]
    assert leaving_record["holdout_offers"][0]["rank"] == 4
    assert 'nbo_recommendations_total{degraded="false",variant="control"} 2.0' in metrics


def assert_every_product_accounted_once(record: dict[str, Any], catalogue: Catalogue) -> None:
    """Shown, held back, excluded or ranked out: each product of the catalogue exactly once."""
    accounted = (
        [o["product_id"] for o in record["offers"]]
        + [o["product_id"] for o in record["holdout_offers"]]
        + [e["product_id"] for e in record["exclusions"]]
        + record["ranked_out"]
    )
    assert sorted(accounted) == sorted(p.id for p in catalogue.products)
