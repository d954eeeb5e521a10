"""Champion/challenger assignment: which recommender serves one customer.

A customer is in the challenger group when a stable hash of the customer id falls below
``challenger_share``: the same customer always gets the same variant (across requests,
processes and restarts - Python's ``hash()`` is salted per process, so blake2b is used),
and raising the share only moves customers from champion to challenger, never back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import cast

from core.scoring.base import RecommenderScorer
from registry.client import LoadedModel
from service.decision.outcome import Decision
from service.infra.state import ServingState

_BUCKETS = 10_000


class Variant(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


def bucket(customer_id: str) -> int:
    """The customer's bucket in ``[0, 10000)``, the same in every process."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8, person=b"nbo-variant").digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def assign_variant(customer_id: str, challenger_share: float) -> Variant:
    if challenger_share > 0 and bucket(customer_id) < challenger_share * _BUCKETS:
        return Variant.CHALLENGER
    return Variant.CHAMPION


@dataclass(frozen=True)
class Choice:
    """The recommender serving this request and, in shadow mode, the one scored beside it."""

    variant: Variant
    recommender: LoadedModel | None
    shadow: LoadedModel | None
    model_versions: dict[str, str]  # registered model name -> version of what served


def choose(
    state: ServingState, customer_id: str, challenger_share: float, shadow_mode: bool
) -> Choice:
    """Pick the variant from one state snapshot (so versions can never mix in a response).

    Without a loaded challenger everyone gets the champion. In shadow mode the challenger
    also scores champion customers (``shadow``), for the audit record only.
    """
    challenger = state.challenger
    variant = (
        assign_variant(customer_id, challenger_share)
        if challenger is not None
        else Variant.CHAMPION
    )
    serving = challenger if variant is Variant.CHALLENGER else state.recommender
    shadow = challenger if shadow_mode and variant is Variant.CHAMPION else None
    versions = dict(state.model_versions)
    if serving is not None:
        versions[serving.name] = str(serving.version)
    return Choice(variant, serving, shadow, versions)


def scorer_of(model: LoadedModel | None) -> RecommenderScorer | None:
    """The recommender scorer of a loaded model (its kind was validated when loaded)."""
    return cast(RecommenderScorer, model.scorer) if model is not None else None


def with_shadow(decision: Decision, shadow: LoadedModel, shadow_decision: Decision) -> Decision:
    """``decision`` carrying what the shadow (challenger) model would have offered."""
    offers = [
        {"product_id": o.product.id, "rank": o.rank, "score": o.score}
        for o in shadow_decision.offers
    ]
    summary: dict[str, object] = {
        "model": shadow.name,
        "version": str(shadow.version),
        "degraded_reason": (
            shadow_decision.degraded_reason.value if shadow_decision.degraded_reason else None
        ),
        "offers": offers,
    }
    return replace(decision, shadow=summary)
