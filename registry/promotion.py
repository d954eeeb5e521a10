"""The promotion gate: a version may take an alias only if it is not worse than the champion
by more than a margin, with 95% confidence.

"Not worse" is judged on the model kind's primary offline metric (recommender MAP@7, churn,
maturity and response ROC-AUC; higher is better for all) and only when both versions were
evaluated on the same data: the run tag ``nbo.data_fingerprint`` (hash of the canonical
tables, or of the bank-marketing file for a response model) and the run param
``holdout_as_of`` (the holdout date, or the CV scheme) must match. A version evaluated on other
data cannot be compared, so it is refused as well.

Why a margin and an interval: a holdout of a few hundred customers moves MAP@7 in the third
decimal from sampling alone, so "candidate >= champion" to the fourth decimal refuses an
equally good (or cheaper) model by chance. The gate instead bootstraps the difference
``candidate - champion`` over the holdout rows both versions scored
(``registry.bootstrap``, on the per-row values of ``registry.holdout``) and passes the
version when the lower bound of the 95% interval is above ``-margin``
(``NBO_PROMOTION_MARGIN``, in metric units): non-inferior. When either version has no
per-row values (trained before they were logged, or a response model, evaluated by
cross-validation), the gate falls back to the logged metrics: passes when
``candidate - champion >= -margin``; the finding says which rule was used.

When a replay of recorded decisions was run (``registry.replay``), any unsuitable top offer
also refuses the version. A refusal is recorded in the alias history (outcome ``refused``,
with the gate's reasons). ``--force`` overrides every refusal, but only with a reason; the
reason and the fact that the gate was overridden are recorded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.bootstrap import NotPaired, paired_difference
from registry.client import ALLOWED_ALIASES, Registry, RegistryError, VersionInfo
from registry.history import AliasEvent, champion_line
from registry.holdout import ARTIFACT_FILE, HoldoutValues, HoldoutValuesError
from registry.replay import ReplayReport

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


class PromotionRefused(RegistryError):
    """The gate refused the version; ``problems`` says why (each a full sentence)."""

    def __init__(self, name: str, version: int, alias: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{name} version {version} not promoted to {alias}: "
            + "; ".join(problems)
            + " (recorded in the alias history; use --force --reason TEXT to override)"
        )


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


@dataclass(frozen=True)
class Verdict:
    candidate: Evaluation
    champion: Evaluation | None
    problems: list[str] = field(default_factory=list)
    difference: Difference | None = None

    @property
    def allowed(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """What the history records about the gate: its reasons, else the difference found."""
        if self.problems:
            return "; ".join(self.problems)
        if self.difference is not None:
            return self.difference.describe()
        return "no champion to compare with" if self.champion is None else ""


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


def judge(
    candidate: Evaluation,
    champion: Evaluation | None,
    found: Difference | None = None,
    replay: ReplayReport | None = None,
) -> Verdict:
    """The gate's decision, without touching the registry (pure, so tests can drive it).

    ``found`` is the difference to the champion (:func:`difference`), needed when the
    champion is another, comparable version.
    """
    problems: list[str] = []
    own = own_problem(candidate)
    if own is not None:
        problems.append(own)
    elif champion is not None and champion.version != candidate.version:
        problem = comparability(candidate, champion, "the champion")
        if problem is not None:
            problems.append(problem)
        elif found is None:
            raise ValueError("judge needs the difference to a comparable champion")
        elif not found.non_inferior:
            problems.append(
                f"{candidate.metric} {candidate.value:.4f} is worse than the champion's "
                f"(version {champion.version}) {champion.value:.4f} beyond the margin "
                f"{found.margin:.4f}: {found.evidence()}"
            )
    if replay is not None and replay.unsuitable:
        problems.append(
            f"replay of {replay.decisions} recorded decisions: {replay.unsuitable} top offers "
            "would be unsuitable"
        )
    return Verdict(candidate, champion, problems, found)


def check(
    registry: Registry,
    name: str,
    version: int,
    replay: ReplayReport | None = None,
    margin: float | None = None,
) -> Verdict:
    """Judge ``version`` of ``name`` against the current champion (unknown model/version
    -> :class:`registry.client.ModelNotFoundError`). ``margin`` defaults to
    ``NBO_PROMOTION_MARGIN``."""
    margin = registry.settings.promotion_margin if margin is None else margin
    candidate = evaluation(registry, registry.version(name, version))
    champion_version = registry.alias_version(name, "champion")
    champion = (
        evaluation(registry, registry.version(name, champion_version))
        if champion_version is not None
        else None
    )
    found = None
    if (
        champion is not None
        and champion.version != candidate.version
        and comparability(candidate, champion) is None
    ):
        found = difference(registry, candidate, champion, margin)
    return judge(candidate, champion, found, replay)


def promote(
    registry: Registry,
    name: str,
    version: int,
    alias: str = "champion",
    *,
    force: bool = False,
    reason: str = "",
    actor: str | None = None,
    replay: ReplayReport | None = None,
    margin: float | None = None,
) -> tuple[VersionInfo, Verdict]:
    """Gate, then move ``alias``; on a refusal the alias is unchanged, the refusal is
    recorded in the history and :class:`PromotionRefused` is raised.

    ``force`` needs a non-empty ``reason``. The gate runs for the challenger alias too: a
    challenger gets real customers, so it must clear the same bar (or be forced).
    """
    if alias not in ALLOWED_ALIASES:
        raise RegistryError(
            f"alias {alias!r} is not allowed (use one of {', '.join(ALLOWED_ALIASES)})"
        )
    if force and not reason.strip():
        raise RegistryError("--force needs --reason TEXT: say why the gate is overridden")
    verdict = check(registry, name, version, replay, margin)
    if not verdict.allowed and not force:
        registry.record_refusal(
            name, version, alias, gate=verdict.describe(), reason=reason.strip(), actor=actor
        )
        raise PromotionRefused(name, version, alias, verdict.problems)
    info = registry.promote(
        name,
        version,
        alias,
        reason=reason.strip(),
        actor=actor,
        action="promote",
        forced=force and not verdict.allowed,
        gate=verdict.describe(),
    )
    return info, verdict


def rollback(
    registry: Registry, name: str, *, reason: str = "", actor: str | None = None
) -> tuple[VersionInfo, AliasEvent]:
    """Move ``champion`` back to the version that held it before the current one.

    Uses the recorded history (see :func:`registry.history.champion_line`); refuses when
    the champion was moved outside ``nbo`` (it no longer matches the history) or when no
    earlier champion is recorded. No gate: going back to a model that already served is
    the emergency exit.
    """
    events = registry.history(name)
    line = champion_line(events)
    current = registry.alias_version(name, "champion")
    if current is None:
        raise RegistryError(f"model {name!r} has no champion to roll back")
    if not line or line[-1] != current:
        raise RegistryError(
            f"model {name!r}: the champion (version {current}) does not match the recorded "
            "history (moved outside nbo?); promote the wanted version explicitly"
        )
    if len(line) < 2:
        raise RegistryError(f"model {name!r}: no earlier champion is recorded before {current}")
    target = line[-2]
    info = registry.promote(
        name,
        target,
        "champion",
        reason=reason.strip() or f"rollback from version {current}",
        actor=actor,
        action="rollback",
    )
    return info, registry.history(name)[-1]
