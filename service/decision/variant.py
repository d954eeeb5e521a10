"""Champion/challenger assignment: which recommender serves one customer.

A customer is in the challenger group when a stable hash of the customer id falls below
``challenger_share``: the same customer always gets the same variant (across requests,
processes and restarts - Python's ``hash()`` is salted per process, so blake2b is used),
and raising the share only moves customers from champion to challenger, never back.

The control group (``NBO_CONTROL_SHARE``) is drawn the same way but from the customer's
pseudonym (a keyed HMAC of the id, ``core.pseudonym``) with its own personalisation, so
it is independent of the challenger split, cannot be predicted without the pseudonym key,
and can be recomputed from an audit record (which carries the pseudonym). A control
customer gets no proactive offer: only service treatments (:data:`SERVICE_TRIGGERS`) are
shown, and the offers held back are recorded for the audit (:func:`hold_out`), so uplift
against control can be measured. Why: without a stable hold-out nobody can say whether
the offers change anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final, cast

from core.scoring.base import RecommenderScorer
from registry.client import LoadedModel
from service.api.schemas import OfferBody
from service.decision.outcome import Decision
from service.infra.state import ServingState

_BUCKETS = 10_000


class Variant(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


CONTROL: Final = "control"
"""The response's ``variant`` for a control customer: whichever recommender decided, the
answer holds back proactive offers (:func:`in_control`)."""

CONTROL_REASON: Final = "control_group"
"""``withheld_reason`` of a control customer's response: proactive offers were held back."""

SERVICE_TRIGGERS = frozenset({"churn", "maturity"})
"""Treatment triggers that are service, not marketing: a control customer still gets a
churn retention or maturity treatment (withholding it would cost the bank the customer to
prove a point). Cross-sell and rule-triggered treatments (upgrade, date rules, stage) are
marketing and held back."""


def bucket(customer_id: str) -> int:
    """The customer's bucket in ``[0, 10000)``, the same in every process."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8, person=b"nbo-variant").digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def control_bucket(pseudonym: str) -> int:
    """The customer's control bucket in ``[0, 10000)`` from their pseudonym (keyed)."""
    digest = hashlib.blake2b(pseudonym.encode(), digest_size=8, person=b"nbo-control").digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def in_control(pseudonym: str, control_share: float) -> bool:
    """True for the stable ``control_share`` of customers held out of proactive offers;
    raising the share only adds customers to control, never removes any."""
    return control_share > 0 and control_bucket(pseudonym) < control_share * _BUCKETS


def hold_out(offers: list[OfferBody]) -> tuple[list[OfferBody], list[OfferBody]]:
    """A control customer's offers split into (shown, held back).

    Shown: the service treatments (:data:`SERVICE_TRIGGERS`), ranked again from 1 in
    their order. Held back: every other offer with its would-be rank, for the audit.
    """
    shown = [o for o in offers if o["trigger"] in SERVICE_TRIGGERS]
    held = [o for o in offers if o["trigger"] not in SERVICE_TRIGGERS]
    ranked = [{**o, "rank": rank} for rank, o in enumerate(shown, start=1)]
    return ranked, held


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
