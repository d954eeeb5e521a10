"""What a logged model carries so it describes and loads itself: signature, input example,
its own code and complete pinned requirements.

* Signature: one named column per field the model reads (``core.scoring.pyfunc``); text
  fields are ``string``, the others ``Any`` (a number, or null for unknown: MLflow's
  ``double`` would refuse a Python int). Outputs: the probability column(s).
* Input example: a real training record cut to those columns, or, when the job gives
  none, one built from the signature (nulls and "unknown").
* Code: ``core/scoring`` and a ``core/__init__.py`` that extends its package path, so a
  model loaded inside this project does not hide the project's other ``core`` modules.
* Requirements: MLflow, numpy and pandas (the wrapper), and the distribution of every
  module the pickled scorer names (scikit-learn for a response model), each pinned to the
  installed version. Derived from the pickle itself, so a new dependency cannot be missed.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
import pickle
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from mlflow.types.schema import AnyType, Array
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import core.scoring
from core.scoring.compat import MOVED
from core.scoring.pyfunc import MATURITY_INPUTS, OUTPUT_COLUMNS, input_columns

WRAPPER_DISTRIBUTIONS = ("mlflow", "numpy", "pandas")
CORE_INIT = (
    '"""Shipped with a model: only ``core.scoring``; the rest of ``core`` is found on the\n'
    'path (the project, when the model is loaded inside it)."""\n\n'
    "from pkgutil import extend_path\n\n"
    "__path__ = extend_path(__path__, __name__)\n"
)


def text_inputs(scorer: Any) -> set[str]:
    """The record fields a scorer reads as text (one-hot levels), by its kind."""
    design = getattr(scorer, "design", None) or getattr(scorer, "customer_design", None)
    if design is not None and hasattr(design, "categorical"):  # churn, legacy recommender
        return {name for name, _ in design.categorical}
    if design is not None and hasattr(design, "levels"):  # response
        return {name for name, _ in design.levels}
    if scorer.kind == "recommender":  # the boosted recommender
        return {"segment", "tier", *(name for name, _ in getattr(scorer, "categories", ()))}
    return set()


HELD = "held"
"""The record's list of held products, an optional input of every signature. The scorers
read the ``held__<product>`` fields, not this list; it is declared because MLflow keeps a
record given as one dict on one row only when the signature has a list column (otherwise
a list field, such as ``maturities``, spreads the record over several rows)."""


def _column_type(name: str, text: set[str]) -> Any:
    return DataType.string if name in text else AnyType()


def signature(scorer: Any) -> ModelSignature:
    """Named input columns (all required; a value may be null) and the output columns.

    A maturity model's ``contract`` is ``Any`` too: MLflow's ``Map`` refuses a contract with
    a null field.
    """
    text = text_inputs(scorer)
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(_column_type(name, text), name) for name in input_columns(scorer)
    ]
    if HELD not in input_columns(scorer):
        inputs.append(ColSpec(Array(DataType.string), HELD, required=False))
    if scorer.kind == "maturity":
        inputs.append(ColSpec(AnyType(), MATURITY_INPUTS[1], required=False))
    outputs: list[ColSpec | TensorSpec]
    if scorer.kind == "recommender":
        outputs = [ColSpec(DataType.double, str(p)) for p in scorer.product_ids]
    else:
        outputs = [ColSpec(DataType.double, OUTPUT_COLUMNS.get(scorer.kind, "churn_probability"))]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def input_example(scorer: Any, record: Mapping[Any, Any] | None = None) -> dict[str, Any]:
    """One row of the model's input: ``record``'s values of the columns (JSON-safe), or
    nulls and "unknown" where ``record`` is absent or lacks a column."""
    text = text_inputs(scorer)
    example: dict[str, Any] = {}
    for name in input_columns(scorer):
        value = (record or {}).get(name)
        if isinstance(value, np.generic):  # a numpy scalar of a frame row
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        if name in text and not isinstance(value, str):
            value = "unknown"
        example[name] = value
    if "contract" in example and not isinstance(example["contract"], Mapping):
        listed = (record or {}).get("maturities") or [{}]
        example["contract"] = dict(listed[0])  # the model scores one of the record's
    return example


def write_code(folder: Path) -> list[str]:
    """Copy ``core/scoring`` under ``folder/core`` (with :data:`CORE_INIT`); the code paths."""
    package = folder / "core"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(CORE_INIT)
    source = Path(core.scoring.__file__).parent
    shutil.copytree(source, package / "scoring", ignore=shutil.ignore_patterns("__pycache__"))
    return [str(package)]


class _Recorder(pickle.Unpickler):
    """Unpickles, noting the module of every class or function the pickle names."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        module = MOVED.get((module, name), module)
        self.modules.add(module)
        return super().find_class(module, name)


def pickled_modules(pickled: bytes) -> set[str]:
    """Top-level modules named by a pickle."""
    recorder = _Recorder(io.BytesIO(pickled))
    recorder.load()
    return {m.split(".")[0] for m in recorder.modules}


def requirements(pickled: bytes) -> list[str]:
    """Pinned ``name==version`` of the wrapper's and the pickle's distributions, sorted.

    A module of the standard library or of the shipped code (``core``) needs none; a module
    no installed distribution provides is an error (the model could not load elsewhere).
    """
    owners = importlib.metadata.packages_distributions()
    names = set(WRAPPER_DISTRIBUTIONS)
    for module in pickled_modules(pickled):
        if module in sys.stdlib_module_names or module == "core" or module == "builtins":
            continue
        if module not in owners:
            raise ValueError(f"the scorer's pickle names module {module!r}: no distribution")
        names.update(owners[module])
    return sorted(f"{n}=={importlib.metadata.version(n)}" for n in _closure(names))


def _closure(names: set[str]) -> set[str]:
    """``names`` and, except MLflow's own, the installed distributions they require."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        if name in ("mlflow", "mlflow-skinny"):
            continue  # its installer resolves its own (large) tree
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                importlib.metadata.version(req.name)
            except importlib.metadata.PackageNotFoundError:
                continue
            todo.append(req.name)
    return seen
