"""The audit trail's compact exclusions and priorities (``features.audit_features``): what
the service stores reads back, through every reader, exactly as the record of objects the
readers always saw; records stored in that older form still read unchanged."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis

from cli.registry import recent_decisions
from core.catalogue import Catalogue
from core.decisioning import load_decisioning
from core.settings import PACKAGE_DIR, Settings
from features.audit_export import read_decision, read_decisions
from features.audit_features import PRIORITY_FIELDS, expand
from service.api.schemas import RecommendationRequest, ResponseBody
from service.console.timeline import read_page
from service.decision.audit_record import audit_record, stored_record
from service.decision.contact_policy import ContactState
from service.decision.outcome import Decision
from service.decision.recommend import decide, respond
from service.infra.audit_writer import AuditWriter
from service.infra.feature_fetch import FeatureLookup
from tests.support.records import adult
from tests.support.scorers import FEATURE_SET, FixedChurn, FixedScores

NOW = datetime.now(UTC)
PSEUDONYM = "q" * 64


def _decision(catalogue: Catalogue, churn: float = 0.1, **record: Any) -> Decision:
    """A decision with offers, a dozen exclusions of several rules and ranked priorities."""
    declined = ContactState.decode([(b"d|credit_card|app|e1", NOW.timestamp() - 3600)])
    return decide(
        FeatureLookup(adult(**record), FEATURE_SET, None, declined),
        catalogue=catalogue,
        recommender=FixedScores([p.id for p in catalogue.holdable]),
        churn_model=FixedChurn(churn),
        k=3,
        now=NOW,
        settings=Settings(),
        channel="app",
        decisioning=load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue),
    )


def _response(decision: Decision, request_id: str) -> ResponseBody:
    request = RecommendationRequest(customer_id="C-9", channel="app", k=3)
    response = respond(request, request_id, decision, {"nbo-recommender": "4"})
    response["variant"] = "champion"
    return response


def _records(decision: Decision, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record as stored, and as readers know it built by hand: one object per
    exclusion and per priority (the form the trail stored before the compact one)."""
    response = _response(decision, request_id)
    stored = stored_record(response, decision, adult(), "C-9", PSEUDONYM)
    readable = {
        **stored,
        "exclusions": [
            {"product_id": e.product_id, "rule": e.rule, "detail": e.detail}
            for e in decision.exclusions
        ],
        "arbitration": {
            "retention_eligible": decision.retention_eligible,
            "priorities": [p.as_record() for p in decision.priorities],
        },
        "ranked_out": decision.ranked_out,
    }
    return stored, readable


def test_the_stored_record_reads_back_as_the_record_of_objects(catalogue: Catalogue) -> None:
    decision = _decision(catalogue, risk_level=2, income=15_000.0)
    assert len(decision.exclusions) >= 10 and len(decision.priorities) >= 3
    assert decision.ranked_out  # more candidates than the top k
    assert len({(e.rule, e.detail) for e in decision.exclusions}) < len(decision.exclusions)
    stored, readable = _records(decision, "a" * 32)
    read = expand(orjson.loads(orjson.dumps(stored)))
    assert orjson.dumps(read) == orjson.dumps(readable)  # same values, same key order
    built = audit_record(_response(decision, "a" * 32), decision, adult(), "C-9", PSEUDONYM)
    assert orjson.dumps(built) == orjson.dumps(readable)  # audit_record(): the readers' form
    assert len(orjson.dumps(stored)) < len(orjson.dumps(readable)) - 1_000


def test_a_decision_without_exclusions_or_priorities_stores_empty_lists() -> None:
    decision = Decision(
        offers=[], churn_risk=None, exclusions=[], degraded_reason=None, feature_set=None
    )
    stored = stored_record(_response(decision, "b" * 32), decision, None, "C-9", PSEUDONYM)
    assert stored["exclusions"] == [] and stored["arbitration"]["priorities"] == []
    read = expand(orjson.loads(orjson.dumps(stored)))
    assert read["exclusions"] == [] and read["arbitration"]["priorities"] == []


def test_a_shorter_priority_row_reads_back_without_the_fields_it_lacks() -> None:
    row = [f"v{i}" for i in range(len(PRIORITY_FIELDS) - 2)]
    (read,) = expand({"arbitration": {"priorities": [row]}})["arbitration"]["priorities"]
    assert read == dict(zip(PRIORITY_FIELDS[:-2], row, strict=True))


@pytest.mark.parametrize("churn", [0.1, 0.9])  # 0.9: retention treatments among the priorities
def test_every_reader_gives_the_record_of_objects_for_both_stored_forms(
    catalogue: Catalogue, settings: Settings, redis_client: redis.Redis, churn: float
) -> None:
    decision = _decision(catalogue, churn=churn, risk_level=2)
    compact, readable = _records(decision, "c" * 32)
    _, older = _records(decision, "d" * 32)  # stored as the trail stored it before
    writer = AuditWriter(redis_client, settings)
    assert writer.submit("c" * 32, compact) and writer.submit("d" * 32, older)
    assert writer.flush(timeout=5)
    expected = {
        "c" * 32: orjson.loads(orjson.dumps(readable)),
        "d" * 32: orjson.loads(orjson.dumps(older)),
    }
    assert expected["c" * 32] == {**expected["d" * 32], "request_id": "c" * 32}

    def without_stream_id(record: dict[str, Any]) -> dict[str, Any]:
        """The record as stored: the readers add its stream id (the console its events)."""
        return {k: v for k, v in record.items() if k not in ("stream_id", "events")}

    for request_id, record in expected.items():  # GET /v1/decisions, POST /v1/events
        for features in (True, False):
            found = read_decision(redis_client, settings, request_id, features=features)
            assert found is not None and without_stream_id(found) == record
    exported = read_decisions(redis_client, settings.audit_prefix)
    by_id = {d["request_id"]: without_stream_id(d) for d in exported}
    assert by_id == expected  # nbo audit export / why, the outcomes report
    page = read_page(redis_client, settings, PSEUDONYM, 1)  # the console's timeline
    assert {d["request_id"]: without_stream_id(d) for d in page.decisions} == expected
    replayed = recent_decisions(redis_client, settings.audit_prefix, 5)  # nbo registry replay
    assert {d["request_id"]: without_stream_id(d) for d in replayed} == expected
