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
import io
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.pseudonym import pseudonymiser
from core.redis_keys import contact_key, decisions_key
from core.redis_server import start_embedded_redis, stop_embedded_redis
from core.settings import Settings
from features.online_store import FeatureSetInfo, OnlineStore
from service.app import create_app
from service.infra.log import LOGGER_NAME, JsonFormatter
from tests.support.auth import AUTH
from tests.support.paths import free_port
from tests.support.records import publish_records
from tests.support.served import AS_OF, CUSTOMERS, ask, champion_registry  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


# -- models -------------------------------------------------------------------------------


@pytest.fixture
def served(settings: Settings, champion_registry: str) -> Settings:
    """Test settings pointing at the registry with champions."""
    return settings.model_copy(update={"mlflow_tracking_uri": champion_registry})


# -- feature records ----------------------------------------------------------------------


def publish(settings: Settings, client: redis.Redis, catalogue: Catalogue) -> FeatureSetInfo:
    return publish_records(settings, client, catalogue, CUSTOMERS, as_of=AS_OF)


@pytest.fixture
def live(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[tuple[TestClient, FeatureSetInfo]]:
    """A started app with champions and a published feature set."""
    info = publish(served, redis_client, catalogue)
    with TestClient(create_app(served), headers=AUTH) as client:
        yield client, info


def offered(body: dict[str, Any]) -> list[str]:
    return [offer["product_id"] for offer in body["offers"]]


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

        publish(served, redis_client, catalogue)
        deadline = time.monotonic() + 5
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
    """A full collection would walk every object of the loaded libraries and models (a
    stall of 100+ ms for the requests waiting); while the app serves, they are frozen."""
    publish(served, redis_client, catalogue)
    gc.unfreeze()
    with TestClient(create_app(served), headers=AUTH) as client:
        assert gc.get_freeze_count() > 100_000
        assert ask(client, "C1-CAUTIOUS")["offers"]
    assert gc.get_freeze_count() == 0  # collectable again once the app stops


def test_without_a_recommender_the_service_starts_degraded(
    settings: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    """``settings`` points at an empty registry: no champion of either model."""
    publish(settings, redis_client, catalogue)
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
        publish(own, client, catalogue)
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

VALID = {"customer_id": "C5-RICH", "channel": "app", "k": 3}


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
    response = client.post("/v1/recommendations", json={**VALID, **change})
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


def test_metrics_use_route_templates_and_never_customer_ids(
    live: tuple[TestClient, FeatureSetInfo],
) -> None:
    client, _ = live
    ask(client, "C5-RICH")
    ask(client, "NOBODY-42")
    client.get("/customers/C5-RICH")  # no such route
    client.get("/docs")
    text = client.get("/metrics").text
    assert (
        'nbo_http_requests_total{method="POST",route="/v1/recommendations",status="200"} 2.0'
        in text
    )
    assert (
        'nbo_http_request_duration_seconds_bucket{le="0.005",route="/v1/recommendations"}' in text
    )
    assert 'nbo_http_request_duration_seconds_count{route="/v1/recommendations"} 2.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert 'nbo_http_requests_total{method="GET",route="/docs",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="200"' not in text
    assert 'nbo_recommendations_degraded_total{reason="unknown_customer"} 1.0' in text
    assert 'nbo_exclusions_total{rule="withdrawn"}' in text
    assert 'nbo_model_info{model="nbo-recommender",version="1"} 1.0' in text
    assert 'nbo_model_info{model="nbo-churn",version="1"} 1.0' in text
    age = next(
        line for line in text.splitlines() if line.startswith("nbo_feature_set_age_seconds ")
    )
    assert 0 <= float(age.split()[1]) < 600
    assert "C5-RICH" not in text
    assert "NOBODY-42" not in text


def test_logs_carry_request_ids_never_customer_ids(
    live: tuple[TestClient, FeatureSetInfo],
) -> None:
    client, _ = live
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        known = ask(client, "C5-RICH")
        ask(client, "NOBODY-42")
        client.post("/v1/recommendations", json={**VALID, "customer_id": "BAD ID"})
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue()
    assert f'"request_id":"{known["request_id"]}"' in lines
    assert '"route":"/v1/recommendations"' in lines
    assert '"status":422' in lines
    assert '"duration_ms":' in lines
    for customer_id in ("C5-RICH", "NOBODY-42", "BAD ID"):
        assert customer_id not in lines


def test_one_redis_round_trip_per_recommendation(
    served: Settings,
    redis_client: redis.Redis,
    redis_url: str,
    catalogue: Catalogue,
    key_prefix: str,
) -> None:
    """Every command the server executes under this test's key prefix, seen via MONITOR.

    The pointer refresher is slowed to once an hour, so after startup the only traffic
    under the prefix is the request path's. Filtering by the test's own prefix keeps the
    count exact even when other clients share the server.

    The rule is about READING: a decision's inputs (feature record and contact state) come
    from ONE command sent by the service - an ``EVAL`` of the read script, inside which
    Redis runs the GET and the ZRANGEBYSCORE (MONITOR shows those as the script's, client
    type ``lua``) - and that is the request's only round trip. Decisions are recorded
    behind the answers by the audit writer thread, batched in Lua script calls (EVALSHA,
    and the XADD and SET it runs); those writes are checked apart.
    """
    quiet = served.model_copy(update={"feature_pointer_refresh_seconds": 3600.0})
    info = publish(quiet, redis_client, catalogue)
    customers = ["C5-RICH", "C1-CAUTIOUS", "NOBODY-42", "C3-LEAVING"]
    with TestClient(create_app(quiet), headers=AUTH) as client:
        audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
        seen = _monitor(redis_url, lambda: ([ask(client, c) for c in customers], audit.flush()))
        fetches = client.get("/metrics").text
    mine = [c for c in seen if key_prefix in c["command"]]
    store = OnlineStore(redis_client, quiet.feature_prefix)
    pseudonym = pseudonymiser(quiet)
    sent = [c for c in mine if c["client_type"] != "lua"]  # what clients sent, not scripts
    reads = [c for c in sent if quiet.audit_prefix not in c["command"]]
    assert [c["command"].split()[0] for c in reads] == ["EVAL"] * len(customers), reads
    for c, read in zip(customers, reads, strict=True):  # the script's two reads, in it
        record = store.record_key(info.version, c)
        contact = contact_key(quiet.contact_prefix, pseudonym(c))
        assert f"2 {record} {contact} " in read["command"], read
        at = mine.index(read)
        assert [m["command"].split()[:2] for m in mine[at + 1 : at + 3]] == [
            ["GET", record],
            ["ZRANGEBYSCORE", contact],
        ]
        assert all(m["client_type"] == "lua" for m in mine[at + 1 : at + 3])
    writes = [c["command"] for c in sent if c not in reads]
    assert all(w.split()[0] == "EVALSHA" for w in writes), writes
    scripted = [c["command"] for c in mine if c["client_type"] == "lua"]
    audit_writes = [w for w in scripted if quiet.audit_prefix in w]
    assert all(w.split()[0] in ("XADD", "SET") for w in audit_writes), audit_writes
    assert sum(w.startswith("XADD ") for w in audit_writes) == len(customers)
    assert redis_client.xlen(decisions_key(quiet.audit_prefix)) == len(customers)
    assert f"nbo_feature_fetch_duration_seconds_count {float(len(customers))}" in fetches


def _monitor(redis_url: str, work: Any) -> list[dict[str, Any]]:
    """What the server executed while ``work()`` ran (MONITOR until a sentinel): redis-py's
    parsed lines (``command``, ``client_type`` - ``lua`` for a script's own calls - ...)."""
    sentinel = f"nbo-sentinel-{uuid.uuid4().hex}"
    watcher = redis.Redis.from_url(redis_url)
    seen: list[dict[str, Any]] = []
    started = threading.Event()

    def watch() -> None:
        with watcher.monitor() as monitor:
            started.set()
            for command in monitor.listen():
                if sentinel in command["command"]:
                    return
                seen.append(command)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        work()
    finally:
        with redis.Redis.from_url(redis_url) as poke:
            poke.echo(sentinel)
        thread.join(10)
        watcher.close()
    assert not thread.is_alive(), "MONITOR never saw the sentinel"
    return seen


# -- a real server over TCP ---------------------------------------------------------------


def test_real_uvicorn_over_tcp(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish(served, redis_client, catalogue)
    port = free_port()
    config = uvicorn.Config(
        create_app(served), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=AUTH) as http:
            assert http.get("/readyz").status_code == 200
            response = http.post(
                "/v1/recommendations", json={"customer_id": "C1-CAUTIOUS", "channel": "push"}
            )
            assert response.status_code == 200
            body = response.json()
            assert response.headers["x-request-id"] == body["request_id"]
            assert offered(body) == ["payroll", "medium_term_deposit", "direct_debit"]
            assert "nbo_http_requests_total" in http.get("/metrics").text
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()


def test_stage_and_variant_metrics(live: tuple[TestClient, FeatureSetInfo]) -> None:
    """Every stage of a recommendation is timed; the serving models are listed by variant."""
    client, _ = live
    ask(client, "C5-RICH")
    ask(client, "NOBODY-42")
    text = client.get("/metrics").text
    for stage in ("feature_fetch", "scoring", "filtering", "arbitration", "recording"):
        assert f'nbo_request_stage_duration_seconds_count{{stage="{stage}"}} 2.0' in text
    assert (
        'nbo_model_variant_info{model="nbo-recommender",variant="champion",version="1"} 1.0' in text
    )
    assert "nbo_redis_errors_total" in text  # declared even before any error


def test_a_decision_that_cannot_be_recorded_is_answered_logged_and_counted(
    live: tuple[TestClient, FeatureSetInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording runs after the answer is sent: a failure there cannot take the offers back,
    so it is made loud instead - an error log with the request id (never the customer id)
    and ``nbo_audit_records_total{outcome="failed"}``, which the audit alert watches."""
    client, _ = live

    def broken(*args: object) -> dict[str, object]:
        raise TypeError("not serializable")

    monkeypatch.setattr("service.decision.recommend.audit_record", broken)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service.decision.recommend")
    logger.addHandler(handler)
    try:
        body = ask(client, "C5-RICH")
    finally:
        logger.removeHandler(handler)
    assert body["offers"] and body["degraded"] is False
    lines = out.getvalue()
    assert f'"request_id":"{body["request_id"]}"' in lines and "decision not recorded" in lines
    assert "C5-RICH" not in lines
    text = client.get("/metrics").text
    assert 'nbo_audit_records_total{outcome="failed"} 1.0' in text
    # The decision's own metrics were still counted.
    assert 'nbo_request_stage_duration_seconds_count{stage="recording"} 1.0' in text
