"""The MLflow pyfunc face of a registered scorer: ``mlflow.pyfunc.load_model(...).predict``.

A model version ships this module with the scorer classes (``core/scoring``, as the
version's ``code_paths``), so it loads with MLflow alone, outside this project. Its model
code (:data:`MODEL_CODE`) rebuilds :class:`ScorerPyfunc`; the pickled scorer is the
version's one artifact. The service never comes here: it unpickles the scorer directly.

Input: one record (a dict) or many (a list of dicts or a DataFrame), with a column for
every field the model reads (the version's signature; a field may be null = unknown).
MLflow checks the signature first: a missing column is an error naming it; a column the
model does not read is dropped with MLflow's warning, so a whole feature-table row scores.
Only this module, and not the rest of ``core``, may import MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from core.scoring.compat import load_scorer

SCORER_ARTIFACT = "scorer"
SCORER_FILE = "scorer.pkl"
MODEL_CODE = (
    "from mlflow.models import set_model\n"
    "from core.scoring.pyfunc import ScorerPyfunc\n\n"
    "set_model(ScorerPyfunc())\n"
)
"""MLflow "models from code": the pyfunc is rebuilt by importing the shipped module."""
MATURITY_INPUTS = ("contract", "today")
"""Columns of a maturity model besides its record fields: one entry of the record's
``maturities`` and, optionally, the date to score at (default: today)."""
OUTPUT_COLUMNS = {
    "churn": "churn_probability",
    "maturity": "outflow_probability",
    "response": "accept_probability",
}
"""The one output column of each kind; a recommender has one column per product id."""


class InputError(ValueError):
    """The rows given to ``predict`` lack columns the model reads (names them)."""


def input_columns(scorer: Any) -> list[str]:
    """The columns ``predict`` needs: the fields the scorer reads. A maturity model scores
    the one contract given in ``contract`` (not the record's ``maturities`` list, which the
    service reads to find it); its ``today`` is optional."""
    if scorer.kind == "maturity":
        return [n for n in scorer.feature_names if n != "maturities"] + [MATURITY_INPUTS[0]]
    return list(scorer.feature_names)


def as_frame(model_input: object) -> pd.DataFrame:
    """One record (a mapping), many (a sequence of mappings) or a DataFrame -> rows.

    Why not ``pd.DataFrame(record)``: a record's list field (``held``) would spread it over
    as many rows as the list is long.
    """
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, Mapping):
        return pd.DataFrame([dict(model_input)])
    if isinstance(model_input, Sequence) and not isinstance(model_input, str | bytes):
        return pd.DataFrame([dict(row) for row in model_input])
    raise InputError(
        f"expected a record (dict), a list of records or a DataFrame, not {type(model_input)}"
    )


def _value(value: object) -> object:
    """A cell as the scorers read it: pandas' missing markers become None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    return value


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, object]]:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"missing input column(s) {missing}: the model reads {list(columns)} "
            "(a null value means unknown)"
        )
    return [
        {str(k): _value(v) for k, v in row.items()}
        for row in frame.to_dict("records")  # type: ignore[union-attr]
    ]


def predict_records(scorer: Any, model_input: object) -> pd.DataFrame:
    """Score rows with ``scorer``: what :meth:`ScorerPyfunc.predict` returns."""
    frame = as_frame(model_input)
    records = _records(frame, input_columns(scorer))
    kind = scorer.kind
    if kind == "recommender":
        scores = [scorer.score(r) for r in records]
        matrix = np.vstack(scores) if scores else np.zeros((0, len(scorer.product_ids)))
        return pd.DataFrame(matrix, columns=list(scorer.product_ids))
    if kind == "maturity":
        if any(not isinstance(r["contract"], Mapping) for r in records):
            raise InputError(
                "column 'contract' must hold one contract (a mapping, e.g. an entry of "
                "the record's 'maturities') per row"
            )
        today = date.today()
        values = [
            scorer.outflow_probability(r, r["contract"], _day(r.get("today")) or today)
            for r in records
        ]
    elif kind == "response":
        values = [scorer.accept_probability(r) for r in records]
    else:
        values = [scorer.predict_proba(r) for r in records]
    return pd.DataFrame({OUTPUT_COLUMNS.get(kind, "churn_probability"): values}, dtype=float)


def _day(value: object) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return None


class ScorerPyfunc(PythonModel):
    """Pyfunc adapter: its artifact is the pickled scorer; ``predict`` scores records.

    Output: for a recommender, one column per product id (propensities); for a churn
    model ``churn_probability``; for a maturity model (a row is a record plus a ``contract``
    column holding one entry of its ``maturities``, and optionally ``today``)
    ``outflow_probability``; for a response model (a row is the features of
    ``features.response_features``) ``accept_probability``.
    """

    def load_context(self, context: PythonModelContext) -> None:
        with open(context.artifacts[SCORER_ARTIFACT], "rb") as fh:
            self.scorer = load_scorer(fh)

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return predict_records(self.scorer, model_input)
