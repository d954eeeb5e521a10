"""Maturity outflow risk at request time: a calibrated logistic model in plain Python floats.

For one term deposit listed in a record's ``maturities`` field, the calibrated probability
that its money leaves the bank within 30 days after maturity (trained on deposits only: a
loan's maturity moves no savings, and its probability means nothing). Training
(``training/maturity.py``) fits scikit-learn's ``CalibratedClassifierCV`` (a logistic
regression and a Platt sigmoid fitted on its out-of-fold scores) and copies the learned
numbers here: weights already divided by the training scale, an intercept that absorbs the
mean, and the sigmoid's ``a``, ``b`` (a model may hold several such folds, averaged, as
``CalibratedClassifierCV(ensemble=True)`` would). Scoring a contract is then 17
multiply-adds and one ``exp`` in Python floats: no pandas, no numpy on the request path.

The inputs of a contract (:func:`contract_inputs`) are built by the same function for
training and serving, so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import mul
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


_NAN = math.nan
_PLAN = tuple(
    (name, 1 if name in LOG_INPUTS else 2 if name in RATIO_INPUTS else 0) for name in RECORD_INPUTS
)
"""(record field, transform): 0 as is, 1 ``log1p``, 2 capped ratio."""
_ONE_HOT = {p: tuple(1.0 if q == p else 0.0 for q in DEPOSIT_PRODUCTS) for p in DEPOSIT_PRODUCTS}
_NO_PRODUCT = (0.0,) * len(DEPOSIT_PRODUCTS)


def _number(value: object) -> float:
    """A record or contract value as a finite float, NaN when unknown or not a number."""
    kind = type(value)
    if kind is float:  # the common case (a JSON number), first
        return value if value - value == 0.0 else _NAN  # type: ignore[operator,return-value]
    if kind is int or kind is bool:
        return float(value)  # type: ignore[arg-type]
    if value is None or kind is str:
        return _NAN
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _NAN
    return number if math.isfinite(number) else _NAN


def _day(value: object) -> date | None:
    if type(value) is str:
        try:
            return date.fromisoformat(value[:10])  # type: ignore[index]
        except ValueError:
            return None
    return value if isinstance(value, date) else None


def contract_inputs(record: Mapping[str, Any], contract: Mapping[str, Any]) -> list[float]:
    """The model's raw inputs for one contract of one record, in ``INPUT_NAMES`` order.

    NaN where unknown (imputed by the model). Used by training and serving alike.
    """
    amount = _number(contract.get("amount"))
    balance = _number(record.get("balance"))
    opened, maturity = _day(contract.get("opened_on")), _day(contract.get("maturity_date"))
    values = [
        math.log1p(amount) if amount >= 0.0 else _NAN,
        min(amount / balance, MAX_AMOUNT_SHARE) if balance > 0.0 and amount == amount else _NAN,
        (maturity - opened).days / DAYS_PER_MONTH if opened and maturity else _NAN,
        *_ONE_HOT.get(contract.get("product"), _NO_PRODUCT),  # type: ignore[arg-type]
    ]
    append = values.append
    get = record.get
    for name, transform in _PLAN:
        value = get(name)
        if type(value) is not float:
            value = _number(value)
        elif value - value != 0.0:  # inf or NaN
            value = _NAN
        if transform == 1:
            value = math.log1p(value) if value >= 0.0 else _NAN
        elif transform == 2 and value == value:
            value = -MAX_RATIO if value < -MAX_RATIO else MAX_RATIO if value > MAX_RATIO else value
        append(value)
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
        medians = self.medians
        if len(raw) != len(medians):
            raise ValueError(f"{len(raw)} inputs, the model has {len(medians)}")
        x = [m if v != v else v for v, m in zip(raw, medians, strict=True)]  # NaN -> median
        total = 0.0
        for fold in self.folds:
            if len(fold.weights) != len(x):
                raise ValueError(f"{len(fold.weights)} weights for {len(x)} inputs")
            z = fold.a * (fold.intercept + sum(map(mul, fold.weights, x))) + fold.b
            # 1 / (1 + exp(z)), without overflow for a large z
            total += 1.0 / (1.0 + math.exp(z)) if z < 700.0 else 0.0
        return total / len(self.folds)

    def outflow_probability(
        self, record: Mapping[str, Any], contract: Mapping[str, Any], today: date
    ) -> float:
        """P(money leaves within ``horizon_days`` after maturity); ``today`` does not move it
        (the record is as of its feature date, and so were the training rows)."""
        return self.probability_of_inputs(contract_inputs(record, contract))
