"""The single-record churn path (``assess`` / ``reasons``) against the batch arithmetic.

``LinearChurnModel._explain_record`` redoes ``_explain`` in Python floats; these tests hold
it to the numpy code on awkward records: missing values (``None``, NaN, absent keys),
booleans, text where a number is expected (numeric and not), unknown and unhashable
categories, infinities, and every ``max_reasons`` cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.scoring.base import Reason
from core.scoring.churn import LinearChurnModel, _clip_one, _interp_one
from core.scoring.design import TabularDesign

NUMERIC = (
    "months_since_login",
    "login_trend",
    "logins_1m",
    "balance",
    "balance_change_3m",
    "net_flow_1m",
    "products_dropped_3m",
    "n_products",
    "tenure_months",
    "age",
    "income",
    "score_x",  # no risk test: named on its contribution ("score x 1.5")
)
LEVELS = ("mass", "affluent", "private")


def _training_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(0, 3, rows) for name in NUMERIC})
    frame["balance"] = rng.lognormal(9, 2, rows)
    frame["income"] = rng.lognormal(10, 1, rows)
    frame["months_since_login"] = rng.integers(0, 6, rows).astype(float)
    for name in ("login_trend", "balance_change_3m", "income", "score_x"):  # get a flag
        frame.loc[rng.random(rows) < 0.1, name] = np.nan
    frame["tier"] = rng.choice(LEVELS, rows)
    frame["channel"] = rng.choice(["app", "branch"], rows)
    return frame


@pytest.fixture(scope="module")
def model() -> LinearChurnModel:
    rng = np.random.default_rng(11)
    design = TabularDesign.fit(
        _training_frame(500, rng), NUMERIC, {"tier": LEVELS, "channel": ("app", "branch")}
    )
    width = len(design.columns)
    # a steep, flat-stepped isotonic curve on part of (0, 1): both clamps, knots, plateaus
    xp = np.sort(rng.uniform(0.05, 0.95, 40))
    xp[20] = xp[19]  # a repeated knot
    fp = np.sort(np.round(rng.uniform(0.0, 1.0, 40), 1))
    return LinearChurnModel(
        design=design,
        weights=rng.normal(0, 0.3, width),
        intercept=-0.3,
        calibration_x=xp,
        calibration_y=fp,
        horizon_months=3,
    )


def _value(rng: np.random.Generator, name: str) -> Any:
    pick = rng.integers(0, 40)
    if pick == 0:
        return None
    if pick == 1:
        return math.nan
    if pick == 2:
        return bool(rng.integers(0, 2))
    if pick == 3:
        return int(rng.integers(-3, 10))
    if pick == 4:
        return "n/a"
    if pick == 5:
        return str(round(float(rng.normal(0, 5)), 2))  # numpy converts numeric text
    if pick == 6:
        return 0.0 if rng.integers(0, 2) else -0.0
    if pick == 7 and rng.random() < 0.3:
        return float(rng.choice([math.inf, -math.inf, 1e300]))
    if name == "balance":
        return float(rng.lognormal(9, 2)) * float(rng.choice([1, 1, 1, -1]))
    if name == "income":
        return float(rng.lognormal(10, 1))
    return float(rng.normal(0, 4))


def _records(count: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    categories: list[Any] = [*LEVELS, "unheard-of", None, math.nan, 1, True, {"tier": 1}]
    out: list[dict[str, Any]] = []
    for _ in range(count):
        record: dict[str, Any] = {
            name: _value(rng, name) for name in NUMERIC if rng.random() > 0.05
        }
        record["tier"] = categories[rng.integers(0, len(categories))]
        if rng.random() > 0.1:
            record["channel"] = rng.choice(["app", "branch", "phone"])
        out.append(record)
    return out


def _same(a: float, b: float) -> bool:
    """Equal bits (NaN equal to NaN)."""
    return np.float64(a).tobytes() == np.float64(b).tobytes() or (math.isnan(a) and math.isnan(b))


def _batch_of_one(
    model: LinearChurnModel, record: dict[str, Any], max_reasons: int
) -> tuple[float, list[Any]]:
    """The batch arithmetic the fast path must match: 2-D arrays through ``_explain``; the
    one-hots compared level by level (not the dict lookup)."""
    design = model.design
    raw = design.raw_record(record)
    categories = design._categories([[record.get(n)] for n, _ in design.categorical], 1)
    proba, reasons = model._explain(raw, categories, max_reasons)
    return float(proba[0]), reasons[0]


def _outcome(call: Callable[[], tuple[float, list[Reason]]]) -> Any:
    """The result, or the exception's type (an infinite login gap cannot be worded)."""
    try:
        return call()
    except (OverflowError, ValueError, TypeError) as error:
        return type(error)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # exp/sum overflow on infinities
@pytest.mark.parametrize("max_reasons", [3, 0, 1, 40, -2])
def test_one_record_equals_the_batch_arithmetic(model: LinearChurnModel, max_reasons: int) -> None:
    records = _records(1500, seed=max_reasons + 100)
    named = 0
    for record in records:
        got = _outcome(lambda r=record: model.assess(r, max_reasons))
        want = _outcome(lambda r=record: _batch_of_one(model, r, max_reasons))
        if isinstance(want, type):
            assert got is want, record
            continue
        assert _same(got[0], want[0]), record
        assert got[1] == want[1], record
        assert model.reasons(record, max_reasons) == want[1]
        named += len(got[1])
    if max_reasons > 0:  # the records do exercise the reasons
        assert named > len(records) // 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_every_kind_of_reason_text_is_reached(model: LinearChurnModel) -> None:
    texts = []
    for record in _records(1500, seed=7):
        outcome = _outcome(lambda r=record: model.assess(r, 40))
        texts += [] if isinstance(outcome, type) else [r.text for r in outcome[1]]
    assert any(t.endswith(" unknown") and not t.startswith("tier") for t in texts)
    assert any(t in {f"tier {level}" for level in LEVELS} for t in texts)
    assert any(t in {"tier unknown", "channel unknown"} for t in texts)
    assert any(t.startswith("score x ") for t in texts)
    assert any(t.startswith("no login for ") for t in texts)


def test_one_record_equals_explain_frame_rows(model: LinearChurnModel) -> None:
    """Numeric frame (float columns with NaN), scored as a batch and record by record."""
    rng = np.random.default_rng(3)
    frame = _training_frame(800, rng)
    frame.loc[rng.random(len(frame)) < 0.05, "tier"] = "unheard-of"
    frame.loc[rng.random(len(frame)) < 0.05, "logins_1m"] = np.nan
    proba, reasons = model.explain_frame(frame)
    for i, record in enumerate(frame.to_dict("records")):
        got_proba, got_reasons = model.assess(record)
        assert _same(got_proba, proba[i])
        assert got_reasons == reasons[i]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_design_row_helpers_equal_the_array_methods(model: LinearChurnModel) -> None:
    design = model.design
    for record in _records(500, seed=5):
        raw = design.raw_values(record)
        assert np.array_equal(np.array(raw), design.raw_record(record)[0], equal_nan=True)
        cats = design.categories_values(record)
        reference = design._categories([[record.get(n)] for n, _ in design.categorical], 1)
        assert np.array_equal(design.categories_record(record), reference)
        assert cats == reference[0].tolist()
        z = np.array(design.standardize_values(raw, cats))
        want = design.standardize(design.raw_record(record), reference)[0]
        assert z.tobytes() == want.tobytes()


def test_interp_and_clip_of_one_point_equal_numpy() -> None:
    rng = np.random.default_rng(1)
    xp = np.sort(rng.uniform(0.1, 0.9, 30))
    xp[10] = xp[9]
    fp = np.sort(rng.uniform(-0.2, 1.2, 30))
    fp[5:9] = fp[5]
    points = np.concatenate(
        [rng.uniform(-0.5, 1.5, 3000), xp, [np.nan, -np.inf, np.inf, 0.0, -0.0, 1.0]]
    )
    want = np.clip(np.interp(points, xp, fp), 0.0, 1.0)  # the batch path: many rows at once
    xs, ys = xp.tolist(), fp.tolist()
    for x, w in zip(points.tolist(), want.tolist(), strict=True):
        assert _same(_clip_one(_interp_one(x, xs, ys)), w), x
    for p in [-0.0, 0.0, 1.0, -1e-300, 1.0 + 1e-16, math.nan, -math.inf, math.inf, 0.5]:
        assert _same(_clip_one(p), float(np.clip(np.array([p] * 17), 0.0, 1.0)[3])), p


def test_equal_contributions_keep_the_feature_order() -> None:
    """A stable ranking: signals that raise the log-odds equally are named in design order."""
    names = ("c_feature", "a_feature", "b_feature", "d_feature")
    design = TabularDesign(names, (), (("tier", LEVELS),), np.zeros(4), np.zeros(7), np.ones(7))
    model = LinearChurnModel(
        design=design,
        weights=np.array([0.5, 0.5, 0.5, 0.7, 0.5, 0.0, 0.0]),
        intercept=0.0,
        calibration_x=np.array([0.0, 1.0]),
        calibration_y=np.array([0.0, 1.0]),
        horizon_months=3,
    )
    record = {"c_feature": 1, "a_feature": 1.0, "b_feature": True, "d_feature": 1, "tier": "mass"}
    for max_reasons in (2, 3, 5):
        proba, reasons = model.assess(record, max_reasons)
        assert [r.code for r in reasons] == [
            "d_feature",
            "c_feature",
            "a_feature",
            "b_feature",
            "tier",
        ][:max_reasons]
        assert (proba, reasons) == _batch_of_one(model, record, max_reasons)
    assert model.reasons(record)[1].text == "c feature 1"
