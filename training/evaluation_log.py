"""``nbo evaluate ... --log``: an evaluation becomes an MLflow run, with what was evaluated.

The public-data figures of the README come from models that an evaluation fits itself
(cross-validated or on a train file), never from the registered versions, which are
fitted on the bank's own tables. The run says so: ``nbo.evaluated_model`` describes the
model (its code and how it was fitted), ``nbo.same_code_as`` names the training command
that builds the registered model with the same code (if any), and when the evaluation
ends with one fitted scorer of a registrable kind, that scorer is logged as the run's
model (``models:/<model_id>``: the model the figures belong to, loadable, never a
version of a production model).

Runs go to the ``nbo-evaluations`` experiment (``--experiment`` elsewhere), named
``<kind> evaluation <date> <file>``; the data file is a dataset input (digest: the hash of
its bytes); metrics are ``quality/...`` and ``data/rows``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils import mlflow_tags

from core.settings import Settings
from registry import lineage
from registry.client import AnyScorer, Registry

EVALUATION_EXPERIMENT = "nbo-evaluations"


@dataclass(frozen=True)
class Evaluated:
    """What an evaluation's figures belong to."""

    description: str  # e.g. "calibrated gradient boosting fitted in 5-fold CV on the file"
    same_code_as: str = ""  # e.g. "nbo train response": that command registers this recipe
    scorer: AnyScorer | None = None  # the one fitted scorer, when there is one


def file_digest(path: Path) -> str:
    """First 16 hex digits of the SHA-256 of the file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def metric_names(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric results (text results such as the algorithm are params); the registry
    logs them grouped (``quality/roc_auc``, ``data/rows``: ``registry.metric_groups``)."""
    return {
        name: float(value)
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def log_evaluation(
    settings: Settings,
    kind: str,
    data: Path,
    metrics: Mapping[str, Any],
    evaluated: Evaluated,
    how: str,
    params: Mapping[str, object] | None = None,
    experiment: str | None = None,
) -> str:
    """Record one evaluation as a finished run; returns its id."""
    registry = Registry(settings, experiment=experiment or EVALUATION_EXPERIMENT)
    tags = {
        "nbo.kind": "evaluation",
        "nbo.evaluates": kind,
        "nbo.evaluated_model": evaluated.description,
        "nbo.evaluation": how,
    }
    if evaluated.same_code_as:
        tags["nbo.same_code_as"] = evaluated.same_code_as
    name = lineage.run_name(f"{kind} evaluation", data.name)
    with registry.start_run(name, tags=tags, description=f"{evaluated.description}; {how}") as run:
        digest = file_digest(data) if data.is_file() else ""
        dataset = MetaDataset(  # type: ignore[abstract]  # profile has a default
            source=_source(data), name=data.name, digest=digest or None
        )
        registry.client.log_inputs(
            run,
            datasets=[
                DatasetInput(
                    dataset._to_mlflow_entity(),
                    [InputTag(mlflow_tags.MLFLOW_DATASET_CONTEXT, "evaluation")],
                )
            ],
        )
        text = {k: v for k, v in metrics.items() if isinstance(v, str)}
        numbers = metric_names(metrics)
        registry.log_run_data(run, params={**text, **(params or {})})
        if evaluated.scorer is None:
            registry.log_run_data(run, metrics=numbers)
        else:  # the figures are attached to the model too (its page lists them)
            registry.log_model(evaluated.scorer, f"{kind}-evaluated", metrics=numbers, run_id=run)
    return run


def _source(path: Path) -> DatasetSource:
    """The file as an MLflow dataset source. Why the filter: a local path "can be
    interpreted in multiple ways" (one per artifact scheme) and MLflow warns; any is right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(str(path.resolve()))
