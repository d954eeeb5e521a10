"""Batch churn scoring: every customer's probability, band and reasons - the retention list.

Partition by partition (``core/partitions.py``): a partition's customers are read, only
the model's input features computed for them and scored, and the partition released
before the next is read, so memory follows the partition size (plus the list itself).
Vectorised (a feature frame in, arrays out) through ``LinearChurnModel.explain_columns``,
which runs the same arithmetic as the request path's ``predict_proba`` / ``reasons`` on each
row, so the list and the service agree for the same as-of date. The file is written to a
temporary name in the target folder and renamed into place: a reader never sees half a list.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.engines import SparkEngine
from core.moments import MomentsConfig, load_moments
from core.scoring.churn import LinearChurnModel, churn_bands
from core.settings import Settings
from core.tables import Tables
from training.population import training_features

CHUNK_ROWS = 50_000
"""Rows scored per step (bounds the memory of the contribution matrices; drives the bar)."""
MAX_REASONS = 3
FORMATS = {".parquet": "parquet", ".csv": "csv"}

ChunkProgress = Callable[[int, int], None]
"""Receives ``(rows done, rows total)`` after each chunk."""


class ScoringError(ValueError):
    """Batch scoring cannot run (bad output path, no customers, wrong model kind, ...)."""


def output_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the file extension; anything else is an error."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ScoringError(
            f"{path}: unsupported output format {path.suffix or '(none)'!r}; use .parquet or .csv"
        )
    return fmt


def score_frame(
    model: LinearChurnModel,
    features: pd.DataFrame,
    medium_threshold: float,
    high_threshold: float,
    progress: ChunkProgress | None = None,
) -> pd.DataFrame:
    """One row per customer (index order kept): probability, band, reason codes and texts."""
    total = len(features)
    proba = np.zeros(total)
    codes = [np.full(total, "", dtype=object) for _ in range(MAX_REASONS)]
    texts = [np.full(total, "", dtype=object) for _ in range(MAX_REASONS)]
    for start in range(0, total, CHUNK_ROWS):
        chunk = features.iloc[start : start + CHUNK_ROWS]
        stop = start + len(chunk)
        proba[start:stop], chunk_codes, chunk_texts = model.explain_columns(chunk, MAX_REASONS)
        for k in range(MAX_REASONS):
            codes[k][start:stop] = chunk_codes[k]
            texts[k][start:stop] = chunk_texts[k]
        if progress is not None:
            progress(stop, total)
    out = pd.DataFrame(
        {
            "customer_id": features.index.astype(str),
            "churn_probability": proba,
            "band": churn_bands(proba, medium_threshold, high_threshold),
        }
    )
    for k in range(MAX_REASONS):
        out[f"reason_{k + 1}_code"] = codes[k]
        out[f"reason_{k + 1}"] = texts[k]
    return out


def write_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Write Parquet or CSV (by extension) to a temp file beside ``path``, then rename."""
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def retention_list(
    model: LinearChurnModel,
    tables: Tables,
    catalogue: Catalogue,
    settings: Settings,
    as_of: date,
    progress: ChunkProgress | None = None,
) -> pd.DataFrame:
    """Every customer of the bank at ``as_of`` (not those who had left), riskiest first,
    with ``as_of`` in each row: :func:`retention_list_partitions` of one partition."""
    return retention_list_partitions(
        model, 1, lambda _: tables, catalogue, settings, as_of, progress
    )


def retention_list_partitions(
    model: LinearChurnModel,
    partitions: int,
    read: Callable[[int], Tables],
    catalogue: Catalogue,
    settings: Settings,
    as_of: date,
    progress: ChunkProgress | None = None,
    on_partition: Callable[[int, int], None] | None = None,
    spark: SparkEngine | None = None,
) -> pd.DataFrame:
    """The retention list of a bank read one partition at a time (``read(k)``).

    Only the model's input features are computed. ``progress`` gets ``(rows scored, rows
    known so far)``; ``on_partition`` ``(partition, partitions)`` as each one starts.
    ``spark``: run :func:`score_partition` of every partition as a Spark task
    (``core.engines``; ``read`` and the model are pickled to the executors, each task's
    scores come back to the driver); the callbacks are not called then.
    """
    job = ScoringJob(
        model,
        catalogue,
        load_moments(settings.moments_path),
        as_of,
        settings.churn_medium_threshold,
        settings.churn_high_threshold,
    )
    if spark is not None:
        task = functools.partial(score_partition, read=read, job=job)
        lists = spark.run(task, partitions, f"churn scores as of {as_of:%Y-%m-%d}")
        return _retention_list([s for s in lists if not s.empty], as_of)
    lists = []
    done = 0
    for k in range(partitions):
        if on_partition is not None:
            on_partition(k, partitions)
        scores = score_partition(k, read, job, _shifted(progress, done))
        if not scores.empty:
            lists.append(scores)
            done += len(scores)
    return _retention_list(lists, as_of)


@dataclass(frozen=True)
class ScoringJob:
    """What every partition of one batch scoring shares (pickled to Spark tasks)."""

    model: LinearChurnModel
    catalogue: Catalogue
    moments: MomentsConfig
    as_of: date
    medium_threshold: float
    high_threshold: float


def score_partition(
    k: int,
    read: Callable[[int], Tables],
    job: ScoringJob,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Partition ``k``'s work, the same on both engines: read its tables, compute the
    model's input features of its customers still with the bank and score them (empty
    when it has none). ``progress`` gets ``(rows scored, rows of the partition)``."""
    features = training_features(
        read(k), job.as_of, job.catalogue, job.moments, job.model.feature_names
    )
    return score_frame(job.model, features, job.medium_threshold, job.high_threshold, progress)


def _retention_list(lists: list[pd.DataFrame], as_of: date) -> pd.DataFrame:
    """The partitions' scores as one list with ``as_of``, riskiest first."""
    if not lists:
        raise ScoringError(f"no customers at {as_of:%Y-%m-%d}")
    scores = pd.concat(lists, ignore_index=True) if len(lists) > 1 else lists[0]
    scores.insert(1, "as_of", pd.Timestamp(as_of))
    return scores.sort_values("churn_probability", ascending=False, kind="stable").reset_index(
        drop=True
    )


def _shifted(progress: ChunkProgress | None, before: int) -> ChunkProgress | None:
    """A partition's ``(done, size)`` as the whole run's ``(before + done, before + size)``."""
    if progress is None:
        return None
    return lambda done, size: progress(before + done, before + size)


def check_churn_model(scorer: object, what: str) -> LinearChurnModel:
    """The loaded scorer if batch scoring supports it (the vectorised linear churn model)."""
    if not isinstance(scorer, LinearChurnModel):
        raise ScoringError(f"{what} is a {type(scorer).__name__}, not a churn model")
    return scorer
