"""Replay recorded decisions with a candidate recommender before it serves anyone.

Each recorded decision (the audit trail's ``d`` field, decoded) carries the feature record
the service used (``features``), what it offered (``offers``: product_id, rank, score) and
the decision date (``today``). For each one the candidate re-scores the same record and the
replay reports:

* ``changed``: the top offer the candidate would serve differs from the top offer actually
  served (retention treatments are not model offers and are skipped; for a control-group
  decision, the top of the offers held back, ``holdout_offers``). "Would serve" is the
  service's arbitration redone with the candidate's propensities: among the candidates the
  record lists (``arbitration.priorities``: they passed suitability, eligibility, channel
  and contact rules), the highest propensity x business value x channel weight x lever x
  boost, times the recorded P(accept) and channel affinity when the response model was
  used (``p_accept``, ``channel_affinity``; absent or null: 1). A record without candidates:
  the best-scored product that passes ``core.suitability`` as of the recorded date;
* ``unsuitable``: the candidate's own first choice - its best-scored product among those
  the customer does not hold and that are on sale - fails ``core.suitability`` (risk level
  above the customer's, no valid assessment, age, residency, income, assets). The service
  would block it, but a model that puts unsuitable products first for real customers is
  not one to promote without a human looking (the gate refuses it without ``--force``).

Pure: decisions come in as an iterable of dicts, so the CLI can read them from Redis and
tests can pass a list. No customer id is kept in the report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.catalogue import Catalogue, Product
from core.customer_facts import customer_facts, iso_date
from core.scoring.base import RecommenderScorer
from core.suitability import exclusion, split_suitable


@dataclass(frozen=True)
class ReplayReport:
    decisions: int = 0  # replayed
    skipped: int = 0  # recorded decisions without a feature record or a valid date
    changed: int = 0
    unsuitable: int = 0
    unsuitable_by_rule: dict[str, int] = field(default_factory=dict)


def replay(
    decisions: Iterable[Mapping[str, Any]],
    scorer: RecommenderScorer,
    catalogue: Catalogue,
    validity_days: int,
) -> ReplayReport:
    """Re-score every decision with ``scorer``; see the module docstring for the counts."""
    replayed = skipped = changed = unsuitable = 0
    rules: Counter[str] = Counter()
    known = {p.id for p in catalogue.products}
    holdable = [p for p in catalogue.holdable if p.id in scorer.product_ids]
    for decision in decisions:
        features = decision.get("features")
        today = iso_date(decision.get("today"))
        if not isinstance(features, Mapping) or today is None:
            skipped += 1
            continue
        replayed += 1
        scores = _scores(scorer, features)
        facts = customer_facts(features)
        arbitrated = _arbitrated_top(decision, scores, catalogue, known)
        if not _has_arbitration(decision):  # an older record: by score alone
            allowed, _ = split_suitable(holdable, facts, today, validity_days)
            arbitrated = _best(allowed, scores)
        if arbitrated != _served_top(_would_serve(decision), catalogue, known):
            changed += 1
        offerable = [p for p in holdable if p.active and p.id not in facts.held]
        first_choice = _best(offerable, scores)
        if first_choice is not None:
            product = catalogue.get(first_choice)
            blocked = exclusion(product, facts, today, validity_days)
            if blocked is not None:
                unsuitable += 1
                rules[blocked.rule.value] += 1
    return ReplayReport(replayed, skipped, changed, unsuitable, dict(rules))


def _would_serve(decision: Mapping[str, Any]) -> object:
    """The offers the model's answer held: for a control-group decision, the ones shown
    (service treatments only) and the ones held back (``holdout_offers``) together."""
    offers = decision.get("offers")
    held_back = decision.get("holdout_offers")
    if decision.get("variant") == "control" and isinstance(held_back, list):
        return [*(offers if isinstance(offers, list) else []), *held_back]
    return offers


def _scores(scorer: RecommenderScorer, features: Mapping[str, Any]) -> dict[str, float]:
    values = scorer.score(features)
    if len(values) != len(scorer.product_ids):
        raise ValueError(
            f"candidate returned {len(values)} scores for {len(scorer.product_ids)} products"
        )
    return {pid: float(v) for pid, v in zip(scorer.product_ids, values, strict=True)}


def _best(products: list[Product], scores: Mapping[str, float]) -> str | None:
    """Best-scored product id (ties: catalogue order, like the service's ranking)."""
    best: tuple[float, str] | None = None
    for product in products:
        score = scores.get(product.id, math.nan)
        if math.isfinite(score) and (best is None or score > best[0]):
            best = (score, product.id)
    return best[1] if best else None


def _arbitrated_top(
    decision: Mapping[str, Any], scores: Mapping[str, float], catalogue: Catalogue, known: set[str]
) -> str | None:
    """The first model offer the service would serve with the candidate's scores, or None.

    The service's arbitration (``service.decision.arbitration``) redone: the recorded
    candidates (they passed every filter of that request) ranked by the candidate's
    propensity times their recorded business value, channel weight, lever and boost (and
    P(accept) and channel affinity, when recorded: they do not depend on the recommender);
    retention treatments keep their recorded priority (the churn model's, not the
    recommender's). Of the top ``len(offers)``, the first that is not a retention
    treatment; None when there is none (only treatments were shown) or the record holds no
    arbitration inputs (then :func:`replay` ranks by score alone).
    """
    arbitration = decision.get("arbitration")
    priorities = arbitration.get("priorities") if isinstance(arbitration, Mapping) else None
    offers = decision.get("offers")
    if not isinstance(priorities, list) or not priorities or not isinstance(offers, list):
        return None
    ranked: list[tuple[float, int, str]] = []
    for order, entry in enumerate(priorities):
        pid = entry.get("product_id") if isinstance(entry, Mapping) else None
        if not isinstance(pid, str) or pid not in known:
            continue
        if catalogue.get(pid).retention:
            recorded = entry.get("priority")
            if isinstance(recorded, int | float):
                ranked.append((float(recorded), order, pid))
            continue
        factors = [entry.get(k) for k in ("business_value", "context_weight", "lever", "boost")]
        score = scores.get(pid, math.nan)
        if all(isinstance(f, int | float) for f in factors) and math.isfinite(score):
            # The service's order of multiplication, so that recorded ties stay ties.
            priority = score * _taken(entry)
            for f in factors:
                priority *= float(f)  # type: ignore[arg-type]
            ranked.append((priority, order, pid))
    ranked.sort(key=lambda item: (-item[0], item[1]))  # ties: the recorded order
    for _, _, pid in ranked[: len(offers)]:
        if not catalogue.get(pid).retention:
            return pid
    return None


def _taken(entry: Mapping[str, Any]) -> float:
    """P(accept) x channel affinity as recorded; 1 when the response model was not used."""
    p_accept, affinity = entry.get("p_accept"), entry.get("channel_affinity")
    if isinstance(p_accept, int | float) and isinstance(affinity, int | float):
        return float(p_accept) * float(affinity)
    return 1.0


def _has_arbitration(decision: Mapping[str, Any]) -> bool:
    arbitration = decision.get("arbitration")
    return isinstance(arbitration, Mapping) and bool(arbitration.get("priorities"))


def _served_top(offers: object, catalogue: Catalogue, known: set[str]) -> str | None:
    """The first model offer (lowest rank, retention treatments skipped) actually served."""
    if not isinstance(offers, list):
        return None
    ranked = sorted(
        (o for o in offers if isinstance(o, Mapping) and isinstance(o.get("product_id"), str)),
        key=_rank,
    )
    for offer in ranked:
        pid = offer["product_id"]
        if pid in known and catalogue.get(pid).retention:
            continue
        return str(pid)
    return None


def _rank(offer: Mapping[str, Any]) -> float:
    rank = offer.get("rank")
    return float(rank) if isinstance(rank, int) else math.inf
