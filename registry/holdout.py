"""Per-row holdout values of a version: what the promotion gate bootstraps over.

A logged metric alone (MAP@7 0.4981) says nothing about how sure it is. Training therefore
also logs, next to the model, the holdout row by row as a small compressed artifact
``holdout_values.npz`` in the run (never in git):

* a **mean** metric (recommender ``map_at_7``): each scored customer's own value (AP@7),
  whose mean is the metric;
* a **ROC-AUC** (churn, maturity): each row's 0/1 label and the model's score.

Rows are in the holdout's own order, which is fixed by the data and the holdout date (the
gate pairs two versions only when their ``nbo.data_fingerprint`` and ``holdout_as_of``
match). ``rows_digest`` - a hash of the row keys (customer ids), not the keys - confirms the
pairing without putting raw customer ids into the artifact store.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARTIFACT_FILE = "holdout_values.npz"
"""File name of the artifact at the root of the run's artifacts."""
MEAN = "mean"
AUC = "roc_auc"


class HoldoutValuesError(ValueError):
    """An artifact that is not a readable set of holdout values (says what is wrong)."""


@dataclass(frozen=True)
class HoldoutValues:
    """One version's holdout, row by row.

    ``form`` is :data:`MEAN` (``values``: one number per row, the metric is their mean) or
    :data:`AUC` (``labels`` 0/1 and ``scores``: the metric is their ROC-AUC).
    """

    metric: str
    form: str
    rows_digest: str
    values: np.ndarray | None = None
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.form == MEAN:
            if self.values is None or self.values.ndim != 1:
                raise HoldoutValuesError(f"{self.metric}: a mean metric needs a 1-d values array")
        elif self.form == AUC:
            if self.labels is None or self.scores is None:
                raise HoldoutValuesError(f"{self.metric}: ROC-AUC needs labels and scores")
            if self.labels.shape != self.scores.shape or self.labels.ndim != 1:
                raise HoldoutValuesError(
                    f"{self.metric}: {self.labels.shape} labels but {self.scores.shape} scores"
                )
        else:
            raise HoldoutValuesError(f"{self.metric}: unknown form {self.form!r}")

    @property
    def rows(self) -> int:
        array = self.values if self.form == MEAN else self.labels
        assert array is not None  # checked in __post_init__
        return len(array)

    @classmethod
    def mean(cls, metric: str, values: Iterable[float], keys: Iterable[object]) -> HoldoutValues:
        return cls(metric, MEAN, rows_digest(keys), values=np.asarray(list(values), float))

    @classmethod
    def auc(
        cls, metric: str, labels: np.ndarray, scores: np.ndarray, keys: Iterable[object]
    ) -> HoldoutValues:
        return cls(
            metric,
            AUC,
            rows_digest(keys),
            labels=np.asarray(labels).astype(np.int8),
            scores=np.asarray(scores, float),
        )

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "metric": np.array(self.metric),
            "form": np.array(self.form),
            "rows_digest": np.array(self.rows_digest),
        }
        for key, array in (("values", self.values), ("labels", self.labels),
                           ("scores", self.scores)):  # fmt: skip
            if array is not None:
                arrays[key] = array
        buffer = io.BytesIO()
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        return buffer.getvalue()

    def write(self, folder: Path) -> Path:
        path = folder / ARTIFACT_FILE
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def from_bytes(cls, raw: bytes) -> HoldoutValues:
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                fields = {k: data[k] for k in data.files}
            return cls(
                metric=str(fields["metric"]),
                form=str(fields["form"]),
                rows_digest=str(fields["rows_digest"]),
                values=fields.get("values"),
                labels=fields.get("labels"),
                scores=fields.get("scores"),
            )
        except HoldoutValuesError:
            raise
        except Exception as exc:  # not an npz, a field missing: say so, do not crash
            raise HoldoutValuesError(
                f"{ARTIFACT_FILE} is not readable ({type(exc).__name__}: {exc})"
            ) from exc


def rows_digest(keys: Iterable[object]) -> str:
    """A hash of the row keys in order (the keys themselves are never stored)."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(str(key).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
