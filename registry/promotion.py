"""The promotion gate: a version may take an alias only if it is not worse than the champion
by more than a margin, with 95% confidence.

"Not worse" is judged on the model kind's primary offline metric (recommender MAP@7, churn,
maturity and response ROC-AUC; higher is better for all) and only when both versions were
evaluated on the same data: the run tag ``nbo.data_fingerprint`` (hash of the canonical
tables, or of the bank-marketing file for a response model) and the run param
``holdout_as_of`` (the holdout date, or the CV scheme) must match. A version evaluated on other
data cannot be compared, so it is refused as well. The comparison itself - the paired
bootstrap interval of ``version - champion`` against ``NBO_PROMOTION_MARGIN``, or the
logged metrics when there are no per-row values - is ``registry.noninferiority``.

When a replay of recorded decisions was run (``registry.replay``), any unsuitable top offer
also refuses the version. A refusal is recorded in the alias history (outcome ``refused``,
with the gate's reasons). ``--force`` overrides every refusal, but only with a reason; the
reason and the fact that the gate was overridden are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from registry.client import ALLOWED_ALIASES, Registry, RegistryError, VersionInfo
from registry.history import AliasEvent, champion_line
from registry.noninferiority import (
    FINGERPRINT_TAG,
    HOLDOUT_PARAM,
    KIND_TAG,
    PRIMARY_METRIC,
    Difference,
    Evaluation,
    comparability,
    difference,
    evaluation,
    own_problem,
)
from registry.replay import ReplayReport

__all__ = [
    "FINGERPRINT_TAG",
    "HOLDOUT_PARAM",
    "KIND_TAG",
    "PRIMARY_METRIC",
    "PromotionRefused",
    "Verdict",
    "check",
    "judge",
    "promote",
    "rollback",
]


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
