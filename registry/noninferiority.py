"""How two versions of a model compare on their primary metric: same data or not, and the
difference with its 95% interval against the non-inferiority margin.

Why an interval and a margin: a holdout of a few hundred customers moves MAP@7 in the third
decimal from sampling alone, so "candidate >= champion" to the fourth decimal refuses an
equally good (or cheaper) model by chance. :func:`difference` therefore bootstraps
``candidate - reference`` over the holdout rows both versions scored
(``registry.bootstrap``, on the per-row values of ``registry.holdout``); the candidate is
non-inferior when the lower bound of the 95% interval is above ``-margin``. When either
version has no per-row values (trained before they were logged, or a response model,
evaluated by cross-validation) or the rows do not pair, it falls back to the logged metrics:
non-inferior when ``candidate - reference >= -margin``; the finding says which rule was used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from registry.bootstrap import NotPaired, paired_difference
from registry.client import Registry, VersionInfo
from registry.holdout import ARTIFACT_FILE, HoldoutValues, HoldoutValuesError

PRIMARY_METRIC = {
    "recommender": "map_at_7",
    "churn": "roc_auc",
    "maturity": "roc_auc",
    "response": "roc_auc",
}
"""Model kind (run tag ``nbo.kind``) -> the metric the gate compares."""
FINGERPRINT_TAG = "nbo.data_fingerprint"
HOLDOUT_PARAM = "holdout_as_of"
KIND_TAG = "nbo.kind"


@dataclass(frozen=True)
class Evaluation:
    """What the gate needs to know about one version's offline evaluation."""

    version: int
    kind: str | None
    metric: str | None
    value: float | None
    fingerprint: str | None
    holdout_as_of: str | None
    run_id: str | None = None

    @property
    def data(self) -> tuple[str | None, str | None]:
        return self.fingerprint, self.holdout_as_of


@dataclass(frozen=True)
class Difference:
    """``candidate - reference`` on the primary metric, judged against the margin.

    With ``low``/``high`` it is a paired bootstrap interval over ``rows`` holdout rows;
    without, the raw difference of the logged metrics (``fallback`` says why).
    """

    metric: str
    candidate: float
    reference: float
    diff: float
    margin: float
    low: float | None = None
    high: float | None = None
    rows: int | None = None
    resamples: int | None = None
    fallback: str = ""

    @property
    def method(self) -> str:
        return "paired bootstrap" if self.low is not None else "raw"

    @property
    def non_inferior(self) -> bool:
        if self.low is not None:
            return self.low > -self.margin
        return self.diff >= -self.margin

    def evidence(self) -> str:
        """The difference and its interval (or why there is none)."""
        if self.low is not None and self.high is not None:
            how = (
                f"95% interval [{self.low:+.4f}, {self.high:+.4f}], paired bootstrap over "
                f"{self.rows} holdout rows, {self.resamples} resamples"
            )
        else:
            how = f"no interval: {self.fallback}"
        return f"diff {self.diff:+.4f} ({how})"

    def describe(self) -> str:
        """One line: the difference, its interval (or why none), the margin, the verdict."""
        verdict = "non-inferior" if self.non_inferior else "worse beyond the margin"
        return f"{self.metric} {self.evidence()}, margin {self.margin:.4f}: {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "method": self.method, "non_inferior": self.non_inferior}


def evaluation(registry: Registry, info: VersionInfo) -> Evaluation:
    run = registry.run_data(info.run_id)
    kind = run.tags.get(KIND_TAG) or info.tags.get(KIND_TAG)
    metric = PRIMARY_METRIC.get(kind or "")
    value = run.metrics.get(metric) if metric else None
    return Evaluation(
        version=info.version,
        kind=kind,
        metric=metric,
        value=value,
        fingerprint=run.tags.get(FINGERPRINT_TAG),
        holdout_as_of=run.params.get(HOLDOUT_PARAM),
        run_id=info.run_id,
    )


def own_problem(candidate: Evaluation) -> str | None:
    """Why the version has no primary metric to judge (``None`` when it has one)."""
    if candidate.metric is None:
        return (
            f"version {candidate.version} has no known model kind (run tag {KIND_TAG}="
            f"{candidate.kind!r}), so it has no primary metric"
        )
    if candidate.value is None or not math.isfinite(candidate.value):
        return f"version {candidate.version} has no {candidate.metric} metric"
    return None


def comparability(
    candidate: Evaluation, reference: Evaluation, reference_name: str = ""
) -> str | None:
    """Why the two versions' primary metrics cannot be compared (``None`` when they can).
    ``reference_name`` names the reference in the sentence (default "version N")."""
    ref = reference_name or f"version {reference.version}"
    problem = own_problem(candidate)
    if problem is not None:
        return problem
    if None in candidate.data or candidate.data != reference.data:
        return (
            f"evaluation data differs from {ref}'s "
            f"(version {candidate.version}: fingerprint {candidate.fingerprint}, holdout "
            f"{candidate.holdout_as_of}; {ref} (version {reference.version}): fingerprint "
            f"{reference.fingerprint}, holdout {reference.holdout_as_of}), so the "
            f"{candidate.metric} values cannot be compared"
        )
    if reference.kind != candidate.kind:
        return (
            f"version {candidate.version} is a {candidate.kind} model, {ref} "
            f"(version {reference.version}) a {reference.kind} model"
        )
    if reference.value is None or not math.isfinite(reference.value):
        return f"{ref} (version {reference.version}) has no {candidate.metric} to compare with"
    return None


def difference(
    registry: Registry, candidate: Evaluation, reference: Evaluation, margin: float
) -> Difference:
    """The paired bootstrap of ``candidate - reference`` when both logged per-row holdout
    values for the same rows, else the raw difference of the logged metrics.

    Call only for comparable versions (:func:`comparability` is ``None``).
    """
    assert candidate.metric is not None and candidate.value is not None
    assert reference.value is not None
    raw = Difference(
        candidate.metric,
        candidate.value,
        reference.value,
        candidate.value - reference.value,
        margin,
    )
    values: list[HoldoutValues] = []
    for version in (candidate, reference):
        found = holdout_values(registry, version)
        if isinstance(found, str):
            return _replace(raw, fallback=found)
        values.append(found)
    try:
        interval = paired_difference(values[0], values[1])
    except NotPaired as exc:
        return _replace(raw, fallback=str(exc))
    return _replace(
        raw,
        diff=interval.diff,
        low=interval.low,
        high=interval.high,
        rows=interval.rows,
        resamples=interval.resamples,
    )


def holdout_values(registry: Registry, version: Evaluation) -> HoldoutValues | str:
    """The version's per-row holdout values, or a sentence saying why there are none."""
    raw = registry.run_artifact(version.run_id, ARTIFACT_FILE)
    if raw is None:
        return f"version {version.version} has no per-row holdout values ({ARTIFACT_FILE})"
    try:
        values = HoldoutValues.from_bytes(raw)
    except HoldoutValuesError as exc:
        return f"version {version.version}: {exc}"
    if values.metric != version.metric:
        return (
            f"version {version.version}'s holdout values are of {values.metric}, "
            f"not {version.metric}"
        )
    return values


def _replace(base: Difference, **changes: Any) -> Difference:
    return Difference(**{**asdict(base), **changes})
