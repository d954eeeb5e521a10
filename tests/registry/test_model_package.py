"""A registered version describes and carries itself: signature, input example, validated
input (one record or many), its own code and complete pinned requirements, and it loads
and scores in a Python that cannot import this project."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

from core.scoring.response import ResponseDesign, ResponseModel
from core.settings import Settings
from registry.client import Registry
from registry.model_package import pickled_modules, requirements
from tests.support.registry import empty_store
from tests.support.scorers import tiny_churn_model

MODEL = "nbo-churn-package"
EXAMPLE = {
    "months_since_login": 2,
    "tier": "affluent",
    "held": ["current_account", "mortgage"],
    "maturities": [{"product": "term_deposit"}, {"product": "term_deposit"}],
}
"""A record as the online store holds it: list fields the model does not read."""


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    tmp = tmp_path_factory.mktemp("package")
    settings = Settings(home=tmp / "home", mlflow_tracking_uri=empty_store(tmp / "m.db"))
    info = Registry(settings).log_and_register(
        tiny_churn_model(2.0), MODEL, tags={"nbo.kind": "churn"}, example=EXAMPLE
    )
    assert info.source is not None
    return settings, info.source


def _model_dir(settings: Settings, source: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(source, tracking_uri=settings.tracking_uri))


def test_signature_names_every_input_and_the_output(version: tuple[Settings, str]) -> None:
    settings, source = version
    folder = _model_dir(settings, source)
    info = mlflow.models.Model.load(str(folder / "MLmodel"))
    assert info.signature is not None
    inputs = {c["name"]: c for c in info.signature.inputs.to_dict()}
    assert list(inputs) == ["months_since_login", "tier", "held"]
    assert not inputs["held"]["required"]  # declared so a dict record stays one row
    assert inputs["tier"]["type"] == "string" and inputs["tier"]["required"]
    assert inputs["months_since_login"]["type"] == "any"  # a number or null: ints allowed
    assert info.signature.outputs is not None
    assert [c["name"] for c in info.signature.outputs.to_dict()] == ["churn_probability"]
    example = json.loads((folder / "input_example.json").read_text())
    assert example == {"months_since_login": 2, "tier": "affluent"}  # cut to the inputs


def test_one_record_or_many_and_a_missing_column_is_named(version: tuple[Settings, str]) -> None:
    _, source = version
    pyfunc = mlflow.pyfunc.load_model(source)
    model = tiny_churn_model(2.0)
    one = pyfunc.predict(EXAMPLE)  # a dict whose list field must not spread over rows
    assert one["churn_probability"].tolist() == [pytest.approx(model.predict_proba(EXAMPLE))]
    many = pyfunc.predict([EXAMPLE, {"months_since_login": None, "tier": None, "held": []}])
    assert len(many) == 2 and many["churn_probability"].iloc[0] == one.iloc[0, 0]
    with pytest.raises(MlflowException, match=r"missing inputs \['months_since_login', 'tier'\]"):
        pyfunc.predict({"foo": 1})
    with pytest.raises(MlflowException, match=r"missing inputs \['tier'\]"):
        pyfunc.predict(pd.DataFrame({"months_since_login": [1]}))


def test_requirements_are_pinned_and_derived_from_the_pickle(
    version: tuple[Settings, str],
) -> None:
    settings, source = version
    lines = (_model_dir(settings, source) / "requirements.txt").read_text().split()
    pinned = dict(line.split("==") for line in lines if "==" in line)
    assert {"mlflow", "numpy", "pandas"} <= set(pinned)
    assert all(version for version in pinned.values())
    assert "scikit-learn" not in pinned  # the churn runtime is plain numpy

    design = ResponseDesign.fit([{"age": 30.0, "channel": "app"}], ["age"], ["channel"])
    estimator = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 1.0]]), [0, 1])
    response = ResponseModel(design, estimator, "logistic_regression", feature_names=["age"])
    data = pickle.dumps(response)
    assert {"core", "sklearn", "numpy"} <= pickled_modules(data)
    needed = {r.split("==")[0] for r in requirements(data)}
    assert {"scikit-learn", "scipy", "joblib", "threadpoolctl", "numpy"} <= needed


PORTABLE = textwrap.dedent(
    """
    import json, sys
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
    sys.path[:] = [p for p in sys.path if "site-packages" in p or not p.startswith(REPO)]
    try:
        import core  # noqa: F401
        raise SystemExit("the project is importable: the check would prove nothing")
    except ImportError:
        pass
    import mlflow
    pyfunc = mlflow.pyfunc.load_model(SOURCE)
    out = pyfunc.predict([{"months_since_login": 2, "tier": "affluent"}])
    print(json.dumps(out["churn_probability"].tolist()))
    """
)


def test_a_version_loads_where_the_project_cannot_be_imported(
    version: tuple[Settings, str], tmp_path: Path
) -> None:
    """The model's own code (``code_paths``) is all it needs besides its requirements; the
    full check in a fresh venv is ``python -m registry.portability`` (docs/data-science.md)."""
    settings, source = version
    folder = _model_dir(settings, source)
    repo = str(Path(__file__).resolve().parents[2])
    code = f"REPO = {repo!r}\nSOURCE = {str(folder)!r}\n" + PORTABLE
    env: dict[str, Any] = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    expected = tiny_churn_model(2.0).predict_proba({"months_since_login": 2, "tier": "affluent"})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [pytest.approx(expected)]
