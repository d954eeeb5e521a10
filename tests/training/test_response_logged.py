"""nbo-response from logged data: planted decisions + events -> exact rows and labels."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli.main import app
from features.events_export import EVENTS_SCHEMA
from features.response_features import contact_features
from registry import promotion
from registry.client import Registry
from tests.support.registry import migrate, registry_settings
from training.response_logged import (
    LoggedDataError,
    load_logged,
    logged_examples,
    read_decisions_file,
    train_response_logged,
)

D1 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday
D2 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)  # a Tuesday
D3 = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
FAST = ("logistic_regression",)  # choosing between candidates: test_response_model.py
P1_RECORD = {"age": 40, "job": "admin.", "held__mortgage": 1, "held__loans": 0}


def decision(
    request_id: str, customer: str, at: datetime, channel: str, offers: list[str], **more: Any
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "customer": customer,
        "decided_at": at.isoformat(),
        "channel": channel,
        "offers": [{"product_id": p, "rank": i + 1} for i, p in enumerate(offers)],
        "features": more.pop("features", P1_RECORD),
        **more,
    }


def event(kind: str, request_id: str, customer: str, product: str, at: datetime) -> dict:
    return {
        "stream_id": f"{int(at.timestamp() * 1000)}-0",
        "event_id": f"{request_id}-{product}-{kind}",
        "type": kind,
        "customer": customer,
        "product_id": product,
        "request_id": request_id,
        "channel": "app",
        "timestamp": at,
        "received_at": at,
    }


DECISIONS = [
    decision("r1", "p1", D1, "app", ["funds", "loans"]),
    # credit_card was offered but never shown: no row. p2 had no record in the feature set.
    decision("r2", "p1", D2, "push", ["loans", "credit_card"]),
    decision("r3", "p2", D3, "sms", ["funds"], features=None, feature_set={"as_of": "2026-10-31"}),
]
EVENTS = [
    event("shown", "r1", "p1", "funds", D1 + timedelta(seconds=1)),
    event("shown", "r1", "p1", "loans", D1 + timedelta(seconds=1)),
    event("declined", "r1", "p1", "loans", D1 + timedelta(seconds=5)),
    event("accepted", "r1", "p1", "funds", D1 + timedelta(days=3)),
    event("shown", "r2", "p1", "loans", D2),  # at the decision's own instant: not history
    event("accepted", "r2", "p1", "loans", D2 + timedelta(days=40)),
    event("shown", "r3", "p2", "funds", D3 + timedelta(seconds=1)),
    event("clicked", "r3", "p2", "funds", D3 + timedelta(seconds=2)),
]


def records(customer: str, as_of: date) -> dict[str, Any] | None:
    return {"age": 61} if (customer, as_of) == ("p2", date(2026, 10, 31)) else None


def test_each_shown_offer_gets_the_services_features_and_its_acceptance() -> None:
    rows, labels = logged_examples(DECISIONS, EVENTS, window_days=30, records=records)
    assert labels == [1, 0, 0, 0]  # r2/loans accepted after 40 days: outside the window
    fresh = {
        "times_shown": 1.0,
        "previous_contacts": 0.0,
        "days_since_previous": None,
        "never_contacted": 1.0,
        "previous_outcome": "nonexistent",
    }
    for row in rows[:2]:
        assert row["channel"] == "app" and row["month"] == "nov" and row["day_of_week"] == "mon"
        assert row["age"] == 40.0 and row["job"] == "admin."
        assert row["housing"] == "yes" and row["loan"] == "no"
        assert {k: row[k] for k in fresh} == fresh
    # r2: loans was shown once in r1 and declined 7 days 23 hours before.
    assert {k: rows[2][k] for k in fresh} == {
        "times_shown": 1.0,
        "previous_contacts": 1.0,
        "days_since_previous": 7.0,
        "never_contacted": 0.0,
        "previous_outcome": "failure",
    }
    assert rows[2]["channel"] == "push" and rows[2]["day_of_week"] == "tue"
    # r3: the record comes from the feature tables as of the decision's feature set.
    assert rows[3]["age"] == 61.0 and rows[3]["channel"] == "sms"
    # The very function the service calls online, on the same inputs.
    history = EVENTS[:4]
    online = contact_features(P1_RECORD, "loans", "push", _contacts(history), D2.timestamp())
    assert rows[2] == online
    longer, _ = logged_examples(DECISIONS, EVENTS, window_days=45, records=records)
    assert logged_examples(DECISIONS, EVENTS, 45, records)[1] == [1, 0, 1, 0]
    assert longer == rows
    no_tables, _ = logged_examples(DECISIONS, EVENTS, 30)
    assert no_tables[3]["age"] is None
    # The service reads contact state only within the policy's horizon; so do the rows.
    week = 7 * 86_400
    short, _ = logged_examples(DECISIONS, EVENTS, 30, records, horizon_seconds=week)
    assert {k: short[2][k] for k in fresh} == fresh
    assert short[:2] == rows[:2]


def _contacts(events: list[dict[str, Any]]) -> list[Any]:
    from training.response_logged import LoggedContact

    return [
        LoggedContact(e["type"], e["product_id"], e["channel"], e["timestamp"].timestamp(), "")
        for e in events
    ]


def write_logs(directory: Path, decisions: list[dict], events: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "decisions.jsonl").write_bytes(
        b"".join(orjson.dumps(d) + b"\n" for d in decisions)
    )
    table = pa.Table.from_pylist(events, schema=EVENTS_SCHEMA)
    import pyarrow.parquet as pq

    pq.write_table(table, directory / "events.parquet")
    return directory


def test_bad_logs_name_the_file_and_line(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs", DECISIONS, EVENTS)
    with (logs / "decisions.jsonl").open("ab") as handle:
        handle.write(b'{"request_id": "r9"\n')
    with pytest.raises(LoggedDataError, match=r"decisions\.jsonl line 4: not JSON"):
        read_decisions_file(logs / "decisions.jsonl")
    good = write_logs(tmp_path / "good", DECISIONS, EVENTS)
    with pytest.raises(LoggedDataError, match=r"missing\.parquet: no such events file"):
        load_logged(good / "decisions.jsonl", good / "missing.parquet")
    only_declines = write_logs(tmp_path / "declines", DECISIONS[2:], EVENTS[6:])
    with pytest.raises(LoggedDataError, match="all 1 offers shown were not accepted"):
        load_logged(only_declines / "decisions.jsonl", only_declines / "events.parquet")


def planted_logs(directory: Path, n: int = 40) -> Path:
    """``n`` decisions of one offer each, shown; every third accepted next day."""
    decisions, events = [], []
    for i in range(n):
        at = D1 + timedelta(hours=i)
        rid = f"q{i}"
        channel = "push" if i % 3 == 0 else "sms"
        decisions.append(decision(rid, f"c{i}", at, channel, ["funds"]))
        events.append(event("shown", rid, f"c{i}", "funds", at))
        if i % 3 == 0:
            events.append(event("accepted", rid, f"c{i}", "funds", at + timedelta(days=1)))
    return write_logs(directory, decisions, events)


def test_train_registers_a_response_version_the_gate_judges_by_its_logs(tmp_path: Path) -> None:
    settings = registry_settings(tmp_path, migrate(tmp_path / "template.db"))
    logs = planted_logs(tmp_path / "logs")
    result = train_response_logged(logs, settings, folds=3, algorithms=FAST)
    registry = Registry(settings)
    run = registry.run_data(registry.version("nbo-response", result.version).run_id)
    assert run.tags["nbo.kind"] == "response"
    assert run.params["data_source"] == "logged decisions and events"
    assert run.metrics["rows"] == 40
    assert run.metrics["roc_auc"] == pytest.approx(1.0)  # the channel says it all
    first = run.tags["nbo.data_fingerprint"]
    promotion.promote(registry, "nbo-response", result.version)
    # Other logs, other fingerprint: the gate cannot compare, and refuses.
    other = train_response_logged(
        planted_logs(tmp_path / "more", 45), settings, folds=3, algorithms=FAST
    )
    other_run = registry.run_data(registry.version("nbo-response", other.version).run_id)
    assert other_run.tags["nbo.data_fingerprint"] != first
    with pytest.raises(promotion.PromotionRefused, match="evaluation data differs"):
        promotion.promote(registry, "nbo-response", other.version)


def test_cli_bad_logs_exit_2_and_register_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("NBO_HOME", str(home))
    monkeypatch.delenv("NBO_MLFLOW_TRACKING_URI", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["train", "response", "--logged", str(empty)])
    assert result.exit_code == 2
    assert "expected exactly one of decisions.jsonl, decisions.parquet" in result.output
    both = CliRunner().invoke(
        app, ["train", "response", "--logged", str(empty), "--bank-marketing", "x.csv"]
    )
    assert both.exit_code == 2 and "exactly one of --bank-marketing" in both.output
    assert not (home / "mlflow").exists()  # no registry was even opened
