"""What the service tells its operators: metrics, logs, Redis traffic, a real TCP server.

The app serves the hand-set champions of ``tests.support.served`` from a real Redis and a
real MLflow registry in a temp dir; metrics and logs must never carry a customer id.
"""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

import io
import logging

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.precomputed import ScoreSetKeys
from core.pseudonym import pseudonymiser
from core.redis_keys import contact_key, decisions_key
from core.settings import Settings
from features.online_store import FeatureSetInfo, OnlineStore
from registry.client import Registry
from service.app import create_app
from service.infra.log import LOGGER_NAME, JsonFormatter
from service.infra.redis_guard import REQUEST_CONNECTION_NAME, SERVICE_CONNECTION_NAME
from tests.support.auth import AUTH
from tests.support.live_server import running_service
from tests.support.redis_monitor import audit_held, client_names, monitored, sent_by
from tests.support.served import (  # noqa: F401 (fixtures)
    VALID_REQUEST,
    ask,
    champion_registry,
    live,
    offered,
    publish_customers,
    served,
)
from training.precompute_scores import precompute_scores, served_models

pytestmark = pytest.mark.integration


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
        client.post("/v1/recommendations", json={**VALID_REQUEST, "customer_id": "BAD ID"})
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue()
    assert f'"request_id":"{known["request_id"]}"' in lines
    assert '"route":"/v1/recommendations"' in lines
    assert '"status":422' in lines
    assert '"duration_ms":' in lines
    for customer_id in ("C5-RICH", "NOBODY-42", "BAD ID"):
        assert customer_id not in lines


@pytest.mark.parametrize("precomputed", [False, True], ids=["online", "precomputed"])
def test_one_redis_round_trip_per_recommendation(
    served: Settings,
    redis_client: redis.Redis,
    redis_url: str,
    catalogue: Catalogue,
    key_prefix: str,
    precomputed: bool,
) -> None:
    """Every command the service's own connections (``CLIENT SETNAME`` ``nbo-service*``,
    ``service.infra.redis_guard``) send while it answers, seen via MONITOR: exactly one
    per request, whatever the command - a PING, a SCRIPT LOAD or a second read on the
    request path would be counted. Other clients of a shared server are told apart by
    their connection names and databases (``tests.support.redis_monitor.monitored``).

    The pointer refresher is slowed to once an hour and the audit writer is held while
    the requests run, so the service's only traffic then is the request path's. That one
    command is an ``EVAL`` of the read script, inside which Redis runs the GET and the
    ZRANGEBYSCORE (client type ``lua``). The audit writer's batches, released afterwards,
    are checked apart: Lua script calls whose XADD, SET and customer-index writes land under
    the audit prefix.
    A worker's first request also opens its pooled connection (HELLO, CLIENT SETNAME):
    one warm-up request comes first.
    With a matching precomputed score set (``nbo score recommendations``) the same one
    ``EVAL`` reads the customer's stored scores too: a third key, a third GET inside it.
    """
    quiet = served.model_copy(update={"feature_pointer_refresh_seconds": 3600.0})
    info = publish_customers(quiet, redis_client, catalogue)
    scores = ScoreSetKeys(quiet.feature_prefix)
    score_set = None
    if precomputed:
        recommender, churn = served_models(Registry(quiet), quiet)
        score_set = precompute_scores(
            redis_client, OnlineStore.for_settings(redis_client, quiet), recommender, churn
        )
    customers = ["C5-RICH", "C1-CAUTIOUS", "NOBODY-42", "C3-LEAVING"]
    names: dict[str, str] = {}
    with TestClient(create_app(quiet), headers=AUTH) as client:
        audit = client.app.state.runtime.audit  # type: ignore[attr-defined]
        # Warm-up: the request path's connection is opened (HELLO, CLIENT SETNAME) by the
        # first request of a worker and pooled; the steady state is what is counted.
        ask(client, customers[0])
        assert audit.flush(timeout=60)
        with redis.Redis.from_url(redis_url) as watcher:

            def answer_all() -> None:
                with audit_held(audit):
                    for customer in customers:
                        ask(client, customer)
                    names.update(client_names(watcher))

            seen = monitored(watcher, answer_all)

            def write_audit() -> None:
                assert audit.flush(timeout=60)
                names.update(client_names(watcher))

            seen_writes = monitored(watcher, write_audit)
        fetches = client.get("/metrics").text
    reads = sent_by(seen, names, SERVICE_CONNECTION_NAME)
    assert len(reads) == len(customers), [r["command"][:80] for r in reads]
    assert all(
        names[f"{r['client_address']}:{r['client_port']}"] == REQUEST_CONNECTION_NAME for r in reads
    )
    assert [c["command"].split()[0] for c in reads] == ["EVAL"] * len(customers), reads
    # Nothing under the test's keys came from a connection that is not the service's.
    mine = [c for c in seen if key_prefix in c["command"]]
    assert [c for c in mine if c["client_type"] != "lua"] == reads
    store = OnlineStore.for_settings(redis_client, quiet)
    pseudonym = pseudonymiser(quiet)
    for c, read in zip(customers, reads, strict=True):  # the script's two reads, in it
        record = store.record_key(info.version, c)
        contact = contact_key(quiet.contact_prefix, pseudonym(c))
        inner = [["GET", record], ["ZRANGEBYSCORE", contact]]
        if score_set is None:
            assert f"2 {record} {contact} " in read["command"], read
        else:
            stored = scores.customer(score_set.version, pseudonym(c))
            assert f"3 {record} {contact} {stored} " in read["command"], read
            inner.append(["GET", stored])
        at = mine.index(read)
        assert [m["command"].split()[:2] for m in mine[at + 1 : at + 1 + len(inner)]] == inner
        assert all(m["client_type"] == "lua" for m in mine[at + 1 : at + 1 + len(inner)])
    writes = [c["command"] for c in sent_by(seen_writes, names, SERVICE_CONNECTION_NAME)]
    assert writes and all(w.split()[0] in ("EVALSHA", "SCRIPT", "EVAL") for w in writes), writes
    scripted = [c["command"] for c in seen_writes if c["client_type"] == "lua"]
    audit_writes = [w for w in scripted if quiet.audit_prefix in w]
    # The stream entry, its request-id key and the customer's index (ZADD, trim, TTL).
    audit_commands = ("XADD", "SET", "ZADD", "ZREMRANGEBYRANK", "EXPIRE")
    assert all(w.split()[0] in audit_commands for w in audit_writes), audit_writes
    assert sum(w.startswith("XADD ") for w in audit_writes) == len(customers)
    assert redis_client.xlen(decisions_key(quiet.audit_prefix)) == len(customers) + 1
    assert f"nbo_feature_fetch_duration_seconds_count {float(len(customers) + 1)}" in fetches


# -- a real server over TCP ---------------------------------------------------------------


def test_real_uvicorn_over_tcp(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    publish_customers(served, redis_client, catalogue)
    with (
        running_service(served) as server,
        httpx.Client(base_url=server.url, timeout=10, headers=AUTH) as http,
    ):
        assert http.get("/readyz").status_code == 200
        response = http.post(
            "/v1/recommendations", json={"customer_id": "C1-CAUTIOUS", "channel": "push"}
        )
        assert response.status_code == 200
        body = response.json()
        assert response.headers["x-request-id"] == body["request_id"]
        assert offered(body) == ["payroll", "medium_term_deposit", "direct_debit"]
        assert "nbo_http_requests_total" in http.get("/metrics").text
    assert not server.thread.is_alive()


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

    monkeypatch.setattr("service.decision.recommend.stored_record", broken)
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
