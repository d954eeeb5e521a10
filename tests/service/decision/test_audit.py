"""The decision audit trail: complete records, no raw identifiers, look-ups and exports."""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.audit import app as audit_cli
from core.catalogue import Catalogue
from core.decisioning import load_decisioning
from core.pseudonym import pseudonymiser
from core.settings import PACKAGE_DIR, Settings, get_settings
from features.audit_export import export_audit
from service.api.schemas import RecommendationRequest
from service.decision.audit_record import audit_record, without_identifiers
from service.decision.contact_policy import ContactState
from service.decision.recommend import decide, respond
from service.infra.feature_fetch import FeatureLookup
from service.infra.log import LOGGER_NAME, JsonFormatter
from tests.support.event_app import CUSTOMER, app, module_app, settings  # noqa: F401 (fixtures)
from tests.support.records import adult
from tests.support.scorers import FEATURE_SET, FixedChurn, FixedScores

NOW = datetime.now(UTC)


def test_every_exclusion_is_recorded_and_no_raw_identifier(catalogue: Catalogue) -> None:
    raw = adult(
        risk_level=4,
        resident=False,
        income=15_000.0,
        customer_id="C-RAW-77",
        name="Jane Doe",
        ncodpers="C-RAW-77",
    )
    declined = ContactState.decode([(b"d|credit_card|app|e1", NOW.timestamp() - 3600)])
    decision = decide(
        FeatureLookup(raw, FEATURE_SET, None, declined),
        catalogue=catalogue,
        recommender=FixedScores([p.id for p in catalogue.holdable]),
        churn_model=FixedChurn(0.1),
        k=3,
        now=NOW,
        settings=Settings(),
        channel="app",
        decisioning=load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue),
    )
    request = RecommendationRequest(customer_id="C-RAW-77", channel="app", k=3)
    response = respond(request, "a" * 32, decision, {"nbo-recommender": "4"})
    pseudonym = pseudonymiser(Settings())("C-RAW-77")
    record = audit_record(response, decision, raw, "C-RAW-77", pseudonym)

    # By hand, from core/catalogue.yaml and core/decisioning.yaml for this customer (40, C4,
    # non-resident, income 15,000, assets 250,000, holds a current account, churn 0.1):
    expected = {
        "home_account": "withdrawn",
        "current_account": "held",
        "derivatives_account": "suitability",  # R5 > C4
        "junior_account": "eligibility_age",  # max 17
        "pension_payroll": "eligibility_age",  # min 55
        "mortgage": "eligibility_residency",
        "guarantees": "eligibility_income",  # min 60,000
        "funds": "channel",  # investments: advisor only
        "securities": "channel",
        "credit_card": "contact_policy",  # declined an hour ago
        "deposit_rate_bonus": "not_triggered",  # churn 0.1 < 0.5
        "fee_waiver": "not_triggered",
        "advisor_callback": "not_triggered",
        "wealth_upgrade_meeting": "not_triggered",  # no upgrade_candidate in the record
    }
    recorded = {e["product_id"]: e["rule"] for e in record["exclusions"]}
    assert recorded == expected
    # Every product of the catalogue exactly once: offered, excluded or ranked out (k=3).
    offered = [o["product_id"] for o in record["offers"]]
    accounted = offered + list(recorded) + record["ranked_out"]
    assert sorted(accounted) == sorted(catalogue.ids) and len(offered) == 3
    assert record["customer"] == pseudonym
    assert record["model_versions"] == {"nbo-recommender": "4"}
    assert record["feature_set"]["version"] == FEATURE_SET.version
    assert record["features"]["risk_level"] == 4
    assert len(record["candidate_scores"]) == len(catalogue.holdable)
    offered = [o["product_id"] for o in record["offers"]]
    assert offered == [p["product_id"] for p in record["arbitration"]["priorities"][:3]]
    assert record["contact"]["declined"] == ["credit_card"]
    text = orjson.dumps(record).decode()
    assert "C-RAW-77" not in text
    assert "Jane Doe" not in text


def test_identifying_fields_go_in_any_case_and_so_does_the_raw_id_anywhere() -> None:
    clean = {"risk_level": 3, "income": 42_000.0, "segment": "mass", "held": ["card"]}
    kept = without_identifiers(clean, "C-RAW-9")
    assert kept == clean and kept is not clean  # nothing to drop: a copy, every field
    # The same key set again (its identifying keys are cached), a field holding the raw id.
    leaking = {**clean, "segment": "C-RAW-9"}
    assert without_identifiers(leaking, "C-RAW-9") == {
        k: v for k, v in clean.items() if k != "segment"
    }
    named = {**clean, "Email": "jane@example.org", "FULL_NAME": "Jane Doe", "Customer_ID": 7}
    assert without_identifiers(named, "C-RAW-9") == clean
    assert without_identifiers(named, "C-RAW-9") == clean  # the key set's cached answer


def ask(client: TestClient, customer: str = CUSTOMER) -> dict[str, Any]:
    response = client.post("/v1/recommendations", json={"customer_id": customer, "channel": "app"})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_decision_can_be_fetched_by_request_id(app: TestClient, settings: Settings) -> None:
    body = ask(app)
    found = app.get(f"/v1/decisions/{body['request_id']}")
    assert found.status_code == 200
    record = found.json()
    assert record["request_id"] == body["request_id"]
    assert record["customer"] == pseudonymiser(settings)(CUSTOMER)
    assert [o["product_id"] for o in record["offers"]] == [o["product_id"] for o in body["offers"]]
    assert record["offers"][0]["reasons"] == body["offers"][0]["reasons"]
    assert record["degraded_reason"] == "no_model"
    assert record["feature_set"]["age_seconds"] >= 0
    assert {"suitability"} <= {e["rule"] for e in record["exclusions"]}
    assert CUSTOMER not in found.text
    missing = app.get(f"/v1/decisions/{'b' * 32}")
    assert (missing.status_code, missing.json()["type"]) == (404, "not_found")
    assert app.get("/v1/decisions/NOT-AN-ID").status_code == 422


def test_logs_never_carry_customer_ids(
    app: TestClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)  # does not propagate: caplog cannot see it
    logger.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        body = ask(app)
        ask(app, "NOBODY-99")
        shown = {
            "event_id": "log-1",
            "type": "shown",
            "customer_id": CUSTOMER,
            "product_id": body["offers"][0]["product_id"],
            "request_id": body["request_id"],
            "channel": "app",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        assert app.post("/v1/events", json=shown).status_code == 202
        app.post("/v1/events", json={**shown, "event_id": "log-2", "product_id": "gold"})
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue() + caplog.text
    assert body["request_id"] in lines
    for identifier in (CUSTOMER, "NOBODY-99"):
        assert identifier not in lines


def test_export_and_why(
    app: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = ask(app)
    ask(app, "SOMEONE-ELSE")
    assert app.app.state.runtime.audit.flush()  # type: ignore[attr-defined]  # write-behind
    out = tmp_path / "audit.jsonl"
    total = export_audit(redis_client, settings.audit_prefix, out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == total >= 2
    assert body["request_id"] in {r["request_id"] for r in lines}
    parquet = tmp_path / "audit.parquet"
    assert export_audit(redis_client, settings.audit_prefix, parquet) == total
    assert pq.read_table(parquet).num_rows == total

    for name in ("redis_url", "audit_prefix"):
        monkeypatch.setenv(f"NBO_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv("NBO_PSEUDONYM_KEY", settings.pseudonym_key.get_secret_value())
    get_settings.cache_clear()
    try:
        top = body["offers"][0]["product_id"]
        result = CliRunner().invoke(audit_cli, ["why", "--customer", CUSTOMER, "--product", top])
        assert result.exit_code == 0, result.output
        assert body["request_id"] in result.output
        assert f"offered #1 {top}: suitable" in result.output
        unsuitable = CliRunner().invoke(
            audit_cli, ["why", "--customer", CUSTOMER, "--product", "securities"]
        )
        assert "not offered securities: suitability" in unsuitable.output
        nobody = CliRunner().invoke(audit_cli, ["why", "--customer", "NO-SUCH-ONE"])
        assert nobody.exit_code == 1
        exported = CliRunner().invoke(audit_cli, ["export", "--out", str(tmp_path / "x.jsonl")])
        assert exported.exit_code == 0, exported.output
    finally:
        get_settings.cache_clear()
