"""Contact-history features: hand-built histories and bank rows, and offline == online."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from core.scoring.response import ResponseDesign, ResponseModel
from features.response_features import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    NUMERIC_FEATURES,
    bank_marketing_features,
    contact_features,
    history_features,
)
from service.decision.contact_policy import ContactEntry, ContactState

DAY = 86_400.0
NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC).timestamp()  # a Monday in May
MACRO = {
    "emp_var_rate": -1.8,
    "cons_price_idx": 92.893,
    "cons_conf_idx": -46.2,
    "euribor3m": 1.299,
    "nr_employed": 5099.1,
}


@dataclass(frozen=True)
class Entry:
    kind: str
    product_id: str
    channel: str
    at: float


def bank_row(**changes: str) -> dict[str, str]:
    row = {
        "age": "41",
        "job": "admin.",
        "marital": "married",
        "education": "university.degree",
        "default": "no",
        "housing": "yes",
        "loan": "no",
        "contact": "cellular",
        "month": "may",
        "day_of_week": "mon",
        "duration": "9999",
        "campaign": "3",
        "pdays": "6",
        "previous": "2",
        "poutcome": "failure",
        "emp.var.rate": "-1.8",
        "cons.price.idx": "92.893",
        "cons.conf.idx": "-46.2",
        "euribor3m": "1.299",
        "nr.employed": "5099.1",
        "y": "no",
    }
    row.update(changes)
    return row


def test_history_counts_the_current_run_the_earlier_one_and_how_it_ended() -> None:
    history = [
        Entry("shown", "funds", "app", NOW - 20 * DAY),
        Entry("shown", "funds", "sms", NOW - 18 * DAY),
        Entry("declined", "funds", "sms", NOW - 6.5 * DAY),  # ends the earlier run
        Entry("shown", "funds", "app", NOW - 2 * DAY),
        Entry("shown", "loans", "app", NOW - 1 * DAY),  # another product: ignored
        Entry("shown", "funds", "app", NOW + 1 * DAY),  # after now: ignored
    ]
    assert history_features(history, "funds", NOW) == {
        "times_shown": 2.0,  # one shown in this run + this contact
        "previous_contacts": 2.0,
        "days_since_previous": 6.0,  # whole days, as pdays
        "never_contacted": 0.0,
        "previous_outcome": "failure",
    }


def test_no_history_is_a_first_contact_never_contacted_before() -> None:
    assert history_features([], "funds", NOW) == {
        "times_shown": 1.0,
        "previous_contacts": 0.0,
        "days_since_previous": None,
        "never_contacted": 1.0,
        "previous_outcome": "nonexistent",
    }


def test_an_acceptance_is_a_success_and_starts_a_new_run() -> None:
    history = [
        Entry("shown", "funds", "app", NOW - 40 * DAY),
        Entry("accepted", "funds", "app", NOW - 30 * DAY),
    ]
    got = history_features(history, "funds", NOW)
    assert (got["previous_outcome"], got["times_shown"], got["previous_contacts"]) == (
        "success",
        1.0,
        1.0,
    )
    assert got["days_since_previous"] == 30.0


def test_bank_row_maps_999_to_never_and_ignores_duration() -> None:
    first = bank_marketing_features(bank_row(pdays="999", previous="0", poutcome="nonexistent"))
    assert first["days_since_previous"] is None
    assert first["never_contacted"] == 1.0
    assert first["times_shown"] == 3.0
    assert bank_marketing_features(bank_row(duration="1")) == bank_marketing_features(bank_row())
    assert list(first) == list(FEATURE_NAMES)
    assert first["euribor_x_confidence"] == 1.299 * -46.2  # euribor3m x cons.conf.idx


def test_offline_and_online_give_the_same_features_and_the_same_probability() -> None:
    """The bank row and a record + contact state that say the same thing are one input."""
    record = {
        "age": 41,
        "job": "admin.",
        "marital": "married",
        "education": "university.degree",
        "default": "no",
        "held__mortgage": 1,
        "held__loans": 0,
    }
    state = ContactState.decode(
        [
            ("s|term_deposit|cellular|e1", NOW - 30 * DAY),
            ("s|term_deposit|cellular|e2", NOW - 20 * DAY),
            ("d|term_deposit|cellular|e3", NOW - 6.2 * DAY),
            ("s|term_deposit|cellular|e4", NOW - 3 * DAY),
            ("s|term_deposit|telephone|e5", NOW - 1 * DAY),
        ]
    )
    assert all(isinstance(e, ContactEntry) for e in state.entries)
    online = contact_features(record, "term_deposit", "cellular", state.entries, NOW, MACRO)
    offline = bank_marketing_features(bank_row())
    assert online == offline

    rows = [offline, bank_marketing_features(bank_row(pdays="999", poutcome="nonexistent"))]
    design = ResponseDesign.fit(rows, NUMERIC_FEATURES, CATEGORICAL_FEATURES)

    class Mean:  # a stand-in estimator: P = mean of the row, checkable by hand
        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            p = np.nan_to_num(x).mean(axis=1) / 1e4
            return np.column_stack([1 - p, p])

    model = ResponseModel(design, Mean(), "mean", feature_names=list(FEATURE_NAMES))
    assert model.accept_probability(online) == model.accept_probabilities([offline])[0]


def test_unknown_profile_fields_and_levels_are_unknown_not_errors() -> None:
    online = contact_features({}, "funds", "app", [], NOW)
    assert online["job"] == online["housing"] == "unknown"
    assert online["age"] is None and online["euribor3m"] is None
    assert online["euribor_x_confidence"] is None  # no macro figures: the product is unknown
    half = contact_features({}, "funds", "app", [], NOW, {"euribor3m": 1.299})
    assert half["euribor3m"] == 1.299 and half["euribor_x_confidence"] is None
    design = ResponseDesign(("age",), (("channel", ("cellular", "telephone")),))
    row = design.row(online)
    assert np.isnan(row[0]) and row[1:] == [0.0, 0.0]


def test_a_numeric_feature_unknown_in_every_training_row_is_left_out() -> None:
    rows = [bank_marketing_features(bank_row(pdays="999")) for _ in range(3)]
    design = ResponseDesign.fit(rows, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    assert "days_since_previous" not in design.numeric
    assert "times_shown" in design.numeric
