"""Lineage in MLflow's own fields, so the UI answers "who trained this, from which code and
which data" without custom tags.

* :func:`source_tags` - ``mlflow.user``, ``mlflow.source.name`` / ``type`` and, when the
  project is a git checkout, ``mlflow.source.git.commit`` (with ``-dirty`` noted in
  ``nbo.git_dirty``); what ``mlflow.start_run`` would set, for our bound client.
* :func:`log_dataset` - a training or evaluation frame as an ``mlflow.data`` dataset
  input of the run: its schema, row count, a digest (the job's data fingerprint) and the
  feature-set version in the input's tags. Only metadata: no data is uploaded.
* :func:`run_name` - ``<what> <UTC date> <data>``, e.g. ``churn 2026-12-07 data``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from registry.history import current_actor

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATASET_CONTEXT = mlflow_tags.MLFLOW_DATASET_CONTEXT


def git_commit(root: Path = PROJECT_ROOT) -> tuple[str, bool] | None:
    """(HEAD commit, working tree has changes) of the checkout at ``root``; None if it is
    not a git checkout or git is missing."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip(), bool(status.stdout.strip())


GIT_DIRTY = "nbo.git_dirty"
SOURCE_TAGS = frozenset(
    {
        mlflow_tags.MLFLOW_USER,
        mlflow_tags.MLFLOW_SOURCE_NAME,
        mlflow_tags.MLFLOW_SOURCE_TYPE,
        mlflow_tags.MLFLOW_GIT_COMMIT,
        GIT_DIRTY,
    }
)
"""The tags :func:`source_tags` sets (a logged model copies them from its run)."""


def source_tags(command: str | None = None) -> dict[str, str]:
    """MLflow's system tags of a run started by this process (``command`` names it)."""
    tags = {
        mlflow_tags.MLFLOW_USER: current_actor(),
        mlflow_tags.MLFLOW_SOURCE_NAME: command or " ".join(Path(a).name for a in sys.argv[:3]),
        mlflow_tags.MLFLOW_SOURCE_TYPE: "LOCAL",
    }
    commit = git_commit()
    if commit is not None:
        tags[mlflow_tags.MLFLOW_GIT_COMMIT] = commit[0]
        tags[GIT_DIRTY] = str(commit[1]).lower()
    return tags


def run_name(what: str, data: str, when: datetime | None = None) -> str:
    """``<what> <YYYY-MM-DD> <data>``: what was trained or evaluated, when, on which data."""
    return f"{what} {(when or datetime.now(UTC)):%Y-%m-%d} {data}"


def _nested(value: object) -> bool:
    return isinstance(value, list | dict | tuple)


def log_dataset(
    client: MlflowClient,
    run_id: str,
    frame: pd.DataFrame,
    *,
    name: str,
    digest: str,
    source: str,
    context: str = "training",
    tags: Mapping[str, str] | None = None,
) -> None:
    """Record ``frame`` as an input dataset of the run (schema and profile, not the data;
    list and mapping columns such as ``maturities`` are left out of the schema).

    ``digest`` is the job's fingerprint of the data (the promotion gate compares versions
    with the same one); ``context`` is ``training``, ``holdout`` or ``evaluation``;
    ``tags`` e.g. the feature-set version.
    """
    nested = [c for c in frame.columns if frame[c].map(_nested).any()]
    with warnings.catch_warnings():
        # A local path "can be interpreted in multiple ways" (each artifact scheme): any is
        # right, it only names where the data came from.
        warnings.simplefilter("ignore", UserWarning)
        dataset = from_pandas(
            frame.drop(columns=nested),  # MLflow infers no schema at all with list cells
            source=source,
            name=name,
            digest=digest,
        )
        entity = dataset._to_mlflow_entity()
    input_tags = [InputTag(DATASET_CONTEXT, context)]
    input_tags += [InputTag(k, str(v)) for k, v in (tags or {}).items()]
    client.log_inputs(run_id, datasets=[DatasetInput(entity, input_tags)])
