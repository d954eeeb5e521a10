"""The promotion gate: a version may take an alias only if it is no worse than the champion.

"No worse" is judged on the model kind's primary offline metric (recommender MAP@7, churn,
maturity and response ROC-AUC; higher is better for all) and only when both versions were
evaluated on the same data: the run tag ``nbo.data_fingerprint`` (hash of the canonical
tables, or of the bank-marketing file for a response model) and the run param
``holdout_as_of`` (the holdout date, or the CV scheme) must match. A version evaluated on other
data cannot be compared, so it is refused as well. When a replay of recorded decisions was
run (``registry.replay``), any unsuitable top offer also refuses the version.

``--force`` overrides every refusal, but only with a reason; the reason and the fact that
the gate was overridden are recorded in the alias history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from registry.client import ALLOWED_ALIASES, Registry, RegistryError, VersionInfo
from registry.history import AliasEvent, champion_line
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
            + " (use --force --reason TEXT to override)"
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

    @property
    def data(self) -> tuple[str | None, str | None]:
        return self.fingerprint, self.holdout_as_of


@dataclass(frozen=True)
class Verdict:
    candidate: Evaluation
    champion: Evaluation | None
    problems: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.problems


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
    )


def judge(
    candidate: Evaluation, champion: Evaluation | None, replay: ReplayReport | None = None
) -> Verdict:
    """The gate's decision, without touching the registry (pure, so tests can drive it)."""
    problems: list[str] = []
    if candidate.metric is None:
        problems.append(
            f"version {candidate.version} has no known model kind (run tag {KIND_TAG}="
            f"{candidate.kind!r}), so it has no primary metric"
        )
    elif candidate.value is None or not math.isfinite(candidate.value):
        problems.append(f"version {candidate.version} has no {candidate.metric} metric")
    if champion is not None and champion.version != candidate.version and not problems:
        if None in candidate.data or candidate.data != champion.data:
            problems.append(
                "evaluation data differs from the champion's "
                f"(version {candidate.version}: fingerprint {candidate.fingerprint}, holdout "
                f"{candidate.holdout_as_of}; champion version {champion.version}: fingerprint "
                f"{champion.fingerprint}, holdout {champion.holdout_as_of}), so the "
                f"{candidate.metric} values cannot be compared"
            )
        elif champion.kind != candidate.kind:
            problems.append(
                f"version {candidate.version} is a {candidate.kind} model, the champion "
                f"(version {champion.version}) a {champion.kind} model"
            )
        elif champion.value is not None and candidate.value is not None:
            if candidate.value < champion.value:
                problems.append(
                    f"{candidate.metric} {candidate.value:.4f} is worse than the champion's "
                    f"(version {champion.version}) {champion.value:.4f}"
                )
        else:
            problems.append(
                f"the champion (version {champion.version}) has no {candidate.metric} to "
                "compare with"
            )
    if replay is not None and replay.unsuitable:
        problems.append(
            f"replay of {replay.decisions} recorded decisions: {replay.unsuitable} top offers "
            "would be unsuitable"
        )
    return Verdict(candidate, champion, problems)


def check(
    registry: Registry, name: str, version: int, replay: ReplayReport | None = None
) -> Verdict:
    """Judge ``version`` of ``name`` against the current champion (unknown model/version
    -> :class:`registry.client.ModelNotFoundError`)."""
    candidate = evaluation(registry, registry.version(name, version))
    champion_version = registry.alias_version(name, "champion")
    champion = (
        evaluation(registry, registry.version(name, champion_version))
        if champion_version is not None
        else None
    )
    return judge(candidate, champion, replay)


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
) -> tuple[VersionInfo, Verdict]:
    """Gate, then move ``alias``; :class:`PromotionRefused` (alias unchanged) on a refusal.

    ``force`` needs a non-empty ``reason``. The gate runs for the challenger alias too: a
    challenger gets real customers, so it must clear the same bar (or be forced).
    """
    if alias not in ALLOWED_ALIASES:
        raise RegistryError(
            f"alias {alias!r} is not allowed (use one of {', '.join(ALLOWED_ALIASES)})"
        )
    if force and not reason.strip():
        raise RegistryError("--force needs --reason TEXT: say why the gate is overridden")
    verdict = check(registry, name, version, replay)
    if not verdict.allowed and not force:
        raise PromotionRefused(name, version, alias, verdict.problems)
    info = registry.promote(
        name,
        version,
        alias,
        reason=reason.strip(),
        actor=actor,
        action="promote",
        forced=force and not verdict.allowed,
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
