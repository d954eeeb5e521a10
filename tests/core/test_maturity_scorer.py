"""The maturity scorer's request path: inputs by hand, odd values, no pandas or numpy,
and the registered version as a pyfunc."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from core.scoring.maturity import (
    INPUT_NAMES,
    MaturityOutflowModel,
    MaturityScorer,
    PlattFold,
    contract_inputs,
)
from core.settings import Settings
from registry.client import Registry
from tests.support.paths import REPO_ROOT
from tests.support.registry import empty_store

CONTRACT = {
    "contract": "k" * 32,
    "product": "medium_term_deposit",
    "opened_on": "2025-01-01",
    "maturity_date": "2025-07-02",
    "amount": 5_000.0,
}


def _inputs(record: dict[str, object], contract: dict[str, object]) -> dict[str, float]:
    return dict(zip(INPUT_NAMES, contract_inputs(record, contract), strict=True))


def test_inputs_by_hand() -> None:
    got = _inputs({"balance": 20_000.0, "net_flow_3m": -9.0, "age": 40}, CONTRACT)
    assert got["log_amount"] == math.log1p(5_000.0)
    assert got["amount_share"] == 0.25
    assert got["term_months"] == 182 / 30.4375
    assert (got["product=short_term_deposit"], got["product=medium_term_deposit"]) == (0.0, 1.0)
    assert got["balance"] == math.log1p(20_000.0)
    assert got["net_flow_3m"] == -5.0  # capped
    assert got["age"] == 40.0
    assert math.isnan(got["logins_3m_avg"])  # absent from the record


@pytest.mark.parametrize(
    "odd",
    [
        {"balance": None, "amount": None},
        {"balance": "lots", "amount": float("inf"), "opened_on": "yesterday"},
        {"balance": 0.0, "amount": -5.0, "maturity_date": None, "product": "funds"},
        {"balance": float("nan"), "age": True},
    ],
)
def test_odd_values_are_unknown_not_errors(odd: dict[str, object]) -> None:
    record = {k: v for k, v in odd.items() if k in ("balance", "age")}
    contract = {**CONTRACT, **{k: v for k, v in odd.items() if k not in record}}
    values = contract_inputs(record, contract)
    assert len(values) == len(INPUT_NAMES)
    assert all(isinstance(v, float) and not math.isinf(v) for v in values)
    fold = PlattFold((0.1,) * len(INPUT_NAMES), 0.0, -1.0, 0.0)
    model = MaturityOutflowModel(medians=(1.0,) * len(INPUT_NAMES), folds=(fold,))
    p = model.outflow_probability(record, contract, date(2025, 6, 30))
    assert 0.0 < p < 1.0


def test_imputation_and_platt_by_hand() -> None:
    weights = [0.0] * len(INPUT_NAMES)
    weights[INPUT_NAMES.index("age")] = 0.5
    fold = PlattFold(tuple(weights), intercept=-10.0, a=-2.0, b=1.0)
    medians = [0.0] * len(INPUT_NAMES)
    medians[INPUT_NAMES.index("age")] = 30.0
    model = MaturityOutflowModel(medians=tuple(medians), folds=(fold,))
    # age unknown -> 30 -> logit 5 -> 1 / (1 + exp(-2 * 5 + 1))
    assert model.outflow_probability({}, CONTRACT, date(2025, 6, 1)) == 1 / (1 + math.exp(-9.0))
    assert isinstance(model, MaturityScorer)


def test_the_request_path_imports_neither_pandas_nor_numpy() -> None:
    code = (
        "import sys, core.scoring.maturity as m; "
        "print(sorted({'pandas', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_registered_version_is_a_pyfunc(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=empty_store(tmp_path / "m.db"))
    fold = PlattFold((0.0,) * len(INPUT_NAMES), intercept=1.0, a=-1.0, b=0.0)
    model = MaturityOutflowModel(medians=(0.0,) * len(INPUT_NAMES), folds=(fold,))
    info = Registry(settings).log_and_register(model, "nbo-maturity", tags={"nbo.kind": "maturity"})
    assert info.source is not None
    pyfunc = mlflow.pyfunc.load_model(info.source)
    row = {name: None for name in model.feature_names} | {"balance": 1_000.0, "contract": CONTRACT}
    out = pyfunc.predict(pd.DataFrame([row]))
    assert out["outflow_probability"].tolist() == [pytest.approx(1 / (1 + math.exp(-1.0)))]
    assert (
        pyfunc.predict([row, row])["outflow_probability"].tolist()
        == 2 * out["outflow_probability"].tolist()
    )  # records as a list of dicts, a column the model does not read ignored
    one = pyfunc.predict(row)  # one record as a dict: its contract does not spread
    assert one["outflow_probability"].tolist() == out["outflow_probability"].tolist()
    with pytest.raises(ValueError, match="one contract"):
        pyfunc.predict([row | {"contract": "term_deposit"}])
    with pytest.raises(MlflowException, match="missing inputs"):
        pyfunc.predict({"balance": 1_000.0, "contract": CONTRACT})
