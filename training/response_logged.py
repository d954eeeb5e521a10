"""Training rows of ``nbo-response`` from the service's own logs: decisions + events.

Inputs are the files ``nbo audit export`` (decisions, JSON Lines or Parquet) and ``nbo
events export`` (events, Parquet) write. One row per offer shown - an offer of a recorded
decision that a ``shown`` event cites (request id + product) - with:

* features: ``features.response_features.contact_features``, the function the service
  calls online, on the decision's own inputs: the feature record it read (the audit
  record's ``features``; when the customer had none, the row of the feature tables as of
  the decision's feature set, if tables are given, else an empty record), the customer's
  contact history before the decision (that customer's ``shown`` / ``declined`` /
  ``accepted`` events dated before ``decided_at``, except those citing this decision,
  within the contact policy's horizon: what the service's contact read returns),
  the decision's channel and its time ``decided_at``;
* label: 1 when an ``accepted`` event cites this decision and product at most
  ``window_days`` after ``decided_at``, else 0.

The fingerprint hashes both files' bytes (and the window), so the promotion gate compares
only versions trained on the same logs.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow.parquet as pq

from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser, pseudonymiser
from core.settings import Settings
from core.tables import Tables
from features.pointintime import compute_features, to_records
from features.response_features import Features, contact_features
from training import TrainResult
from training.datasets import Progress
from training.response import ALGORITHMS, DEFAULT_SEED, ResponseData, register_response
from training.tracking import RunOptions

CONTACT_KINDS = ("shown", "declined", "accepted")
EVENT_COLUMNS = ("type", "customer", "product_id", "request_id", "timestamp")
DECISIONS_NAMES = ("decisions.jsonl", "decisions.parquet")
EVENTS_NAME = "events.parquet"
DEFAULT_WINDOW_DAYS = 30

RecordLookup = Callable[[str, date], Mapping[str, Any] | None]
"""(pseudonym, feature-set as_of) -> the customer's feature record then, or None."""


class LoggedDataError(ValueError):
    """The exported decisions or events are unusable; the message names file and line."""


@dataclass(frozen=True, slots=True)
class LoggedContact:
    """One contact event (a ``features.response_features.ContactEvent``)."""

    kind: str
    product_id: str
    channel: str
    at: float
    request_id: str


def _when(value: object, where: str) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise LoggedDataError(f"{where}: {value!r} is not an ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_decisions_file(path: Path) -> list[dict[str, Any]]:
    """Audit records from ``nbo audit export`` output (``.parquet`` or JSON Lines)."""
    if not path.is_file():
        raise LoggedDataError(f"{path}: no such decisions file (write it with nbo audit export)")
    if path.suffix == ".parquet":
        try:
            column = pq.read_table(path, columns=["record"]).column("record").to_pylist()
        except (OSError, KeyError, ValueError) as exc:
            raise LoggedDataError(f"{path}: not an audit export ({exc})") from None
        lines: Iterable[tuple[int, bytes | str]] = enumerate(column, start=1)
    else:
        lines = enumerate(path.read_bytes().splitlines(), start=1)
    records = []
    for line, raw in lines:
        if not raw or not str(raw).strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise LoggedDataError(f"{path} line {line}: not JSON ({exc})") from None
        missing = [k for k in ("request_id", "customer", "decided_at") if k not in record]
        if missing:
            raise LoggedDataError(f"{path} line {line}: missing field(s) {', '.join(missing)}")
        records.append(record)
    return records


def read_events_file(path: Path) -> list[dict[str, Any]]:
    """Event rows from ``nbo events export`` output (Parquet)."""
    if not path.is_file():
        raise LoggedDataError(f"{path}: no such events file (write it with nbo events export)")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise LoggedDataError(f"{path}: not a Parquet events export ({exc})") from None
    missing = [c for c in EVENT_COLUMNS if c not in table.column_names]
    if missing:
        raise LoggedDataError(f"{path}: missing column(s) {', '.join(missing)}")
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def logged_examples(
    decisions: list[dict[str, Any]],
    events: list[dict[str, Any]],
    window_days: int = DEFAULT_WINDOW_DAYS,
    records: RecordLookup | None = None,
    horizon_seconds: float | None = None,
) -> tuple[list[Features], list[int]]:
    """The feature rows and labels of every offer shown (see the module docstring),
    in the order of the decisions and, within one, of its offers.

    ``horizon_seconds``: history older than this before a decision is left out, as the
    service's contact read leaves it out (``Settings.contact_horizon_seconds``)."""
    history: dict[str, list[LoggedContact]] = defaultdict(list)
    shown: set[tuple[str, str]] = set()
    accepted: dict[tuple[str, str], datetime] = {}
    for line, event in enumerate(events, start=1):
        kind = event.get("type")
        if kind not in CONTACT_KINDS:
            continue
        at = _when(event["timestamp"], f"event row {line} field timestamp")
        key = (str(event["request_id"]), str(event["product_id"]))
        contact = LoggedContact(
            str(kind), key[1], str(event.get("channel") or ""), at.timestamp(), key[0]
        )
        history[str(event["customer"])].append(contact)
        if kind == "shown":
            shown.add(key)
        elif kind == "accepted" and (key not in accepted or at < accepted[key]):
            accepted[key] = at
    window = timedelta(days=window_days)
    features: list[Features] = []
    labels: list[int] = []
    for record in decisions:
        request_id = str(record["request_id"])
        decided = _when(record["decided_at"], f"decision {request_id} field decided_at")
        now = decided.timestamp()
        customer = str(record["customer"])
        oldest = now - horizon_seconds if horizon_seconds is not None else -math.inf
        before = [
            e
            for e in history.get(customer, ())
            if oldest <= e.at < now and e.request_id != request_id
        ]
        offered = [o.get("product_id") for o in record.get("offers") or []]
        for product in offered:
            if (request_id, str(product)) not in shown:
                continue
            row = contact_features(
                _record_of(record, customer, records),
                str(product),
                str(record.get("channel") or ""),
                before,
                now,
            )
            taken = accepted.get((request_id, str(product)))
            features.append(row)
            labels.append(int(taken is not None and taken <= decided + window))
    return features, labels


def _record_of(
    decision: Mapping[str, Any], customer: str, records: RecordLookup | None
) -> Mapping[str, Any]:
    """The feature record the decision read, else the tables' row as of its feature set."""
    found = decision.get("features")
    if isinstance(found, Mapping):
        return found
    feature_set = decision.get("feature_set") or {}
    if records is not None and feature_set.get("as_of"):
        row = records(customer, date.fromisoformat(str(feature_set["as_of"])))
        if row is not None:
            return row
    return {}


def decisions_path(directory: Path) -> Path:
    """``decisions.jsonl`` or ``decisions.parquet`` in ``directory`` (exactly one)."""
    found = [directory / n for n in DECISIONS_NAMES if (directory / n).is_file()]
    if len(found) != 1:
        raise LoggedDataError(
            f"{directory}: expected exactly one of {', '.join(DECISIONS_NAMES)} "
            f"(nbo audit export --out {directory / DECISIONS_NAMES[0]}), found {len(found)}"
        )
    return found[0]


def load_logged(
    decisions_file: Path,
    events_file: Path,
    window_days: int = DEFAULT_WINDOW_DAYS,
    records: RecordLookup | None = None,
    horizon_seconds: float | None = None,
) -> ResponseData:
    """The training data of the two exports; :class:`LoggedDataError` when unusable."""
    if window_days < 1:
        raise LoggedDataError(f"--window-days {window_days} must be at least 1")
    decisions = read_decisions_file(decisions_file)
    events = read_events_file(events_file)
    features, labels = logged_examples(decisions, events, window_days, records, horizon_seconds)
    if not features:
        raise LoggedDataError(
            f"{decisions_file} + {events_file}: no offer of a recorded decision has a "
            "'shown' event citing it: nothing to learn from"
        )
    target = np.array(labels, dtype=np.int64)
    if target.min() == target.max():
        outcome = "accepted" if target[0] else "not accepted"
        raise LoggedDataError(
            f"{decisions_file} + {events_file}: all {len(target)} offers shown were {outcome}"
            f" within {window_days} days: nothing to learn from"
        )
    digest = hashlib.sha256()
    for path in (decisions_file, events_file):
        digest.update(path.read_bytes())
    digest.update(f"window {window_days}".encode())
    return ResponseData(features, target, decisions_file.parent, digest.hexdigest()[:16])


def table_records(
    tables: Tables, catalogue: Catalogue, pseudonymise: Pseudonymiser
) -> RecordLookup:
    """A :data:`RecordLookup` over the canonical tables: the point-in-time feature record
    (``features.pointintime``, as materialization computes it) of each pseudonymous
    customer as of a date, computed once per date."""
    by_day: dict[date, dict[str, dict[str, object]]] = {}

    def lookup(customer: str, as_of: date) -> Mapping[str, Any] | None:
        if as_of not in by_day:
            frame = compute_features(tables, as_of, catalogue)
            by_day[as_of] = {pseudonymise(cid): rec for cid, rec in to_records(frame)}
        return by_day[as_of].get(customer)

    return lookup


def train_response_logged(
    directory: Path,
    settings: Settings,
    tables: Tables | None = None,
    catalogue: Catalogue | None = None,
    window_days: int = DEFAULT_WINDOW_DAYS,
    progress: Progress | None = None,
    folds: int = 5,
    seed: int = DEFAULT_SEED,
    algorithms: tuple[str, ...] = ALGORITHMS,
    options: RunOptions | None = None,
) -> TrainResult:
    """Train and register ``nbo-response`` on the exports in ``directory``
    (``decisions.jsonl`` or ``decisions.parquet``, and ``events.parquet``), the same way
    as on a bank-marketing file (``training.response.register_response``). The files are
    read and checked before any run opens: bad logs register nothing."""
    started = time.perf_counter()
    decisions_file = decisions_path(directory)
    records = (
        table_records(tables, catalogue, pseudonymiser(settings))
        if tables is not None and catalogue is not None
        else None
    )
    if progress:
        progress("building rows from the logs")
    horizon = settings.contact_horizon_seconds
    data = load_logged(decisions_file, directory / EVENTS_NAME, window_days, records, horizon)
    fewest = int(min(data.target.sum(), len(data) - data.target.sum()))
    if fewest < folds:
        raise LoggedDataError(
            f"{directory}: {fewest} offers in the rarer class (accepted or not), fewer than "
            f"the {folds} cross-validation folds: log more decisions"
        )
    source = {
        "data_file": f"{directory.name}/{decisions_file.name} + {EVENTS_NAME}",
        "data_source": "logged decisions and events",
        "window_days": window_days,
    }
    return register_response(
        data, source, settings, progress, folds, seed, algorithms, started, options
    )
