"""A registered model version as an MLflow pyfunc model: the pickled scorer behind ``predict``.

The version's folder holds the pickled scorer (artifact ``scorer``, file ``scorer.pkl``) and
a "models from code" file that rebuilds :class:`ScorerPyfunc` by importing this project,
so ``mlflow.pyfunc.load_model(version.source)`` scores records in a notebook. The service
does not use the wrapper: ``Registry.load`` unpickles the scorer directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from registry.compat import load_scorer

SCORER_ARTIFACT = "scorer"


SCORER_FILE = "scorer.pkl"


MODEL_CODE = (
    "from mlflow.models import set_model\n"
    "from registry.pyfunc import ScorerPyfunc\n\n"
    "set_model(ScorerPyfunc())\n"
)
"""MLflow "models from code": the pyfunc is rebuilt by importing this project, not unpickled."""


class ScorerPyfunc(PythonModel):
    """Pyfunc adapter: its artifact is the pickled scorer; ``predict`` scores record rows.

    Output: for a recommender, one column per product id (propensities); for a churn
    model, one column ``churn_probability``; for a maturity model (each row a record's fields
    plus a ``contract`` column holding one entry of its ``maturities``, and optionally a
    ``today`` date), one column ``outflow_probability``; for a response model (each row
    the features of ``features.response_features``), one column ``accept_probability``.
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
        records = pd.DataFrame(model_input).to_dict("records")
        scorer = self.scorer
        if scorer.kind == "recommender":
            scores = np.vstack([scorer.score(r) for r in records])
            return pd.DataFrame(scores, columns=list(scorer.product_ids))
        if scorer.kind == "maturity":
            today = date.today()
            return pd.DataFrame(
                {
                    "outflow_probability": [
                        scorer.outflow_probability(r, r["contract"], r.get("today") or today)
                        for r in records
                    ]
                }
            )
        if scorer.kind == "response":
            return pd.DataFrame(
                {"accept_probability": [scorer.accept_probability(r) for r in records]}
            )
        return pd.DataFrame({"churn_probability": [scorer.predict_proba(r) for r in records]})


@contextmanager
def quiet_signature_warning() -> Iterator[None]:
    """Silence MLflow's "cannot infer a signature" warning while saving our pyfunc.

    A feature record has no fixed schema to declare (fields follow the feature-set
    version); the fields a model reads are recorded in the ``nbo.feature_names`` tag.
    """
    logger = logging.getLogger("mlflow.pyfunc")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's requirement inference imports the model in a subprocess."""
    return [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]
