"""How a training job is tracked: where its run goes, what it is called, whether it
registers a version, and the lineage it records (``registry.lineage``).

A data scientist's trial (``nbo train churn --experiment trials --no-register --param
l2=0.5``) is a run with its logged model in its own experiment and no version of the
production model; the default is what the nightly job does: the ``nbo`` experiment and a
new version of the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.settings import Settings
from registry import lineage
from registry.client import AnyScorer, Registry, VersionInfo


@dataclass(frozen=True)
class RunOptions:
    """Where and how a training run is recorded (the CLI's tracking options)."""

    experiment: str | None = None  # None: the production experiment, ``nbo``
    run_name: str | None = None  # None: ``<kind> <date> <data folder>``
    register: bool = True  # False: log the run and the model, make no version
    description: str | None = None  # the run's note in the MLflow UI
    params: Mapping[str, object] = field(default_factory=dict)  # logged with the model's own

    def registry(self, settings: Settings) -> Registry:
        return Registry(settings, experiment=self.experiment)

    def name_for(self, kind: str, settings: Settings) -> str:
        return self.run_name or lineage.run_name(kind, settings.data_dir.name)


def schema_digest(columns: Sequence[str]) -> str:
    """A short hash of a feature frame's column names: the feature set's schema version."""
    return hashlib.sha256(",".join(columns).encode()).hexdigest()[:12]


def log_frames(
    registry: Registry,
    run_id: str,
    frames: Mapping[str, pd.DataFrame],
    *,
    kind: str,
    fingerprint: str,
    source: Path,
    as_of: Mapping[str, object],
) -> None:
    """Record each frame (context -> features) as a dataset input of the run.

    Name ``<kind>-<context>``, digest = the data fingerprint, tags = the frame's as-of
    dates and schema digest (together: the feature-set version the model was fitted or
    scored on)."""
    for context, frame in frames.items():
        lineage.log_dataset(
            registry.client,
            run_id,
            frame,
            name=f"{kind}-{context}",
            digest=fingerprint,
            source=str(source),
            context=context,
            tags={
                "nbo.as_of": str(as_of.get(context, "")),
                "nbo.feature_schema": schema_digest([str(c) for c in frame.columns]),
            },
        )


def log_time_split(
    registry: Registry,
    run_id: str,
    kind: str,
    fingerprint: str,
    source: Path,
    dates: Mapping[str, object],
    training: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    """:func:`log_frames` of a job fitted on earlier snapshots and scored on a later one:
    ``dates`` holds the job's ``train_as_of`` and ``holdout_as_of``."""
    log_frames(
        registry,
        run_id,
        {"training": training, "holdout": holdout},
        kind=kind,
        fingerprint=fingerprint,
        source=source,
        as_of={"training": dates["train_as_of"], "holdout": dates["holdout_as_of"]},
    )


def finish(
    registry: Registry,
    options: RunOptions,
    scorer: AnyScorer,
    name: str,
    **logged: Any,
) -> VersionInfo | None:
    """Register a version of ``name`` (``options.register``) or only log the model."""
    if options.params:  # e.g. the training sample (training/sample.py)
        logged["params"] = {**options.params, **(logged.get("params") or {})}
    if options.register:
        return registry.log_and_register(scorer, name, **logged)
    registry.log_model(scorer, name, **logged)
    return None
