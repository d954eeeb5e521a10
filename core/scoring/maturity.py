"""Maturity outflow risk at request time: a calibrated logistic model in plain Python floats.

For one contract listed in a record's ``maturities`` field, the calibrated probability that
its money leaves the bank within 30 days after maturity. Training
(``training/maturity.py``) fits scikit-learn's ``CalibratedClassifierCV`` (logistic
regressions, each with its Platt sigmoid fitted on the fold it did not see) and copies the
learned numbers here: per fold, weights already divided by the training scale and an
intercept that absorbs the mean, and the sigmoid's ``a``, ``b``. Scoring a contract is
then ~15 multiply-adds and one ``exp`` per fold, in Python floats: no pandas, no numpy on
the request path (a few microseconds).

The inputs of a contract (:func:`contract_inputs`) are built by the same function for
training and serving, so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, runtime_checkable

RECORD_INPUTS = (
    "balance",
    "logins_3m_avg",
    "months_since_login",
    "login_trend",
    "net_flow_1m",
    "net_flow_3m",
    "balance_change_3m",
    "tenure_months",
    "age",
    "n_products",
    "products_dropped_3m",
)
"""Record fields the model reads (numbers; null -> the training median). ``balance`` enters
as ``log1p`` and the ratios (flows, balance change) capped to +-``MAX_RATIO``: a tiny balance
must not make a ratio of thousands."""
LOG_INPUTS = frozenset({"balance"})
RATIO_INPUTS = frozenset({"net_flow_1m", "net_flow_3m", "balance_change_3m"})
MAX_RATIO = 5.0
DEPOSIT_PRODUCTS = ("short_term_deposit", "medium_term_deposit", "long_term_deposit")
CONTRACT_INPUTS = (
    "log_amount",
    "amount_share",
    "term_months",
    *(f"product={p}" for p in DEPOSIT_PRODUCTS),
)
"""Per-contract inputs: log1p(amount), amount / balance (capped at 5), term in months, and
the deposit product as one-hot columns."""
INPUT_NAMES = (*CONTRACT_INPUTS, *RECORD_INPUTS)
DAYS_PER_MONTH = 30.4375
MAX_AMOUNT_SHARE = 5.0
OUTFLOW_WINDOW_DAYS = 30
"""The label: the contract's money leaves the bank within this many days after maturity."""


@runtime_checkable
class MaturityScorer(Protocol):
    """Calibrated probability that a maturing contract's money leaves the bank."""

    def outflow_probability(
        self, record: Mapping[str, Any], contract: Mapping[str, Any], today: date
    ) -> float:
        """P(the money of ``contract`` leaves within 30 days after its maturity)."""
        ...


@runtime_checkable
class RegisteredMaturityScorer(MaturityScorer, Protocol):
    """A :class:`MaturityScorer` as the registry stores it: with its kind and record inputs."""

    kind: str  # "maturity"
    feature_names: list[str]


def _number(value: object) -> float:
    """A record or contract value as a finite float, NaN when unknown or not a number."""
    if isinstance(value, bool):
        return float(value)
    if value is None or isinstance(value, str):
        return math.nan
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _day(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def contract_inputs(record: Mapping[str, Any], contract: Mapping[str, Any]) -> list[float]:
    """The model's raw inputs for one contract of one record, in ``INPUT_NAMES`` order.

    NaN where unknown (imputed by the model). Used by training and serving alike.
    """
    amount = _number(contract.get("amount"))
    balance = _number(record.get("balance"))
    share = amount / balance if balance > 0 else math.nan
    opened, maturity = _day(contract.get("opened_on")), _day(contract.get("maturity_date"))
    term = (maturity - opened).days / DAYS_PER_MONTH if opened and maturity else math.nan
    product = contract.get("product")
    values = [
        math.log1p(amount) if amount >= 0 else math.nan,
        min(share, MAX_AMOUNT_SHARE) if not math.isnan(share) else math.nan,
        term,
        *(1.0 if product == p else 0.0 for p in DEPOSIT_PRODUCTS),
    ]
    for name in RECORD_INPUTS:
        value = _number(record.get(name))
        if name in LOG_INPUTS:
            value = math.log1p(value) if value >= 0 else math.nan
        elif name in RATIO_INPUTS:
            value = min(max(value, -MAX_RATIO), MAX_RATIO)  # NaN stays NaN
        values.append(value)
    return values


@dataclass(frozen=True)
class PlattFold:
    """One calibrated classifier: logit = weights . raw + intercept; p = 1/(1+exp(a*logit+b))."""

    weights: tuple[float, ...]  # per input, on the raw (imputed, unscaled) value
    intercept: float
    a: float
    b: float


@dataclass
class MaturityOutflowModel:
    """Implements :class:`MaturityScorer`: the average of the folds' calibrated probabilities.

    ``kind`` is ``"maturity"``; ``feature_names`` are the record fields it reads (the
    ``maturities`` field included: the contracts come from there).
    """

    medians: tuple[float, ...]  # per input: the value a missing one takes
    folds: tuple[PlattFold, ...]
    horizon_days: int = OUTFLOW_WINDOW_DAYS
    input_names: tuple[str, ...] = INPUT_NAMES
    kind: str = "maturity"
    feature_names: list[str] = field(default_factory=lambda: [*RECORD_INPUTS, "maturities"])

    def probability_of_inputs(self, raw: Sequence[float]) -> float:
        """The calibrated probability of one row of :func:`contract_inputs` values."""
        x = [m if math.isnan(v) else v for v, m in zip(raw, self.medians, strict=True)]
        total = 0.0
        for fold in self.folds:
            logit = fold.intercept
            for w, v in zip(fold.weights, x, strict=True):
                logit += w * v
            z = fold.a * logit + fold.b
            # 1 / (1 + exp(z)) without overflow for large |z|
            total += 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0
        return total / len(self.folds)

    def outflow_probability(
        self, record: Mapping[str, Any], contract: Mapping[str, Any], today: date
    ) -> float:
        """P(money leaves within ``horizon_days`` after maturity); ``today`` does not move it
        (the record is as of its feature date, and so were the training rows)."""
        return self.probability_of_inputs(contract_inputs(record, contract))
