"""What a customer would actually see: a recommender's ranking after the service's filters.

The offline MAP@7 of ``nbo evaluate recommender`` ranks every product a customer does not
hold. The service shows only what survives the hard suitability and eligibility filter
(``core.suitability.split_suitable``, on the facts ``core.customer_facts`` reads from the
same feature record) and the channel rules of ``core/decisioning.yaml`` for the channel.
:func:`served_rankings` applies those same functions to each scored customer's record and
keeps the model's order among what is left, so the "served" MAP@7 measures the list a
customer would be shown. Why: a model can win offline on products it may never offer.

Not applied, because they depend on live state rather than on the model: the contact
policy (impressions, declines, daily caps), tier channels and lifecycle-stage levers, and
treatments (not recommender products).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.customer_facts import customer_facts
from core.decisioning import DecisioningConfig
from core.scoring.boosted import BoostedRecommender
from core.suitability import split_suitable
from features.pointintime import to_records
from training.metrics import map_at_k
from training.recommender_data import Snapshot, frame_inputs


@dataclass(frozen=True)
class ServedFilter:
    """The filters of one channel: ``today`` is the scored snapshot's date (the day a risk
    assessment's validity is judged on)."""

    catalogue: Catalogue
    decisioning: DecisioningConfig
    channel: str
    validity_days: int


def allowed_matrix(
    features: pd.DataFrame, product_ids: Sequence[str], served: ServedFilter, today: date
) -> np.ndarray:
    """``(rows, products)`` True where the product may be shown to the row's customer on
    ``served.channel``: suitable and eligible today, and no channel rule against it."""
    products = [served.catalogue.get(p) for p in product_ids]
    on_channel = np.array(
        [served.decisioning.channel_rule_against(served.channel, p) is None for p in products]
    )
    position = {p: i for i, p in enumerate(product_ids)}
    allowed = np.zeros((len(features), len(products)), dtype=bool)
    for row, (_, record) in enumerate(to_records(features)):
        kept, _ = split_suitable(products, customer_facts(record), today, served.validity_days)
        allowed[row, [position[p.id] for p in kept]] = True
    return allowed & on_channel


def served_rankings(scores: np.ndarray, allowed: np.ndarray, k: int) -> list[list[int]]:
    """Per row, the ``k`` best allowed product indices by score, best first (ties in
    product order, as the unfiltered ranking); shorter when fewer than ``k`` are allowed."""
    masked = np.where(allowed, scores, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return [[int(i) for i in row if allowed[r, i]] for r, row in enumerate(order)]


@dataclass(frozen=True)
class ServedPart:
    """The adders of one evaluation snapshot: what they added and their served lists."""

    actual: list[set[int]]
    lists: list[list[int]]


def rank_served(
    scorer: BoostedRecommender, snapshot: Snapshot, k: int, served: ServedFilter, today: date
) -> ServedPart:
    """The served top ``k`` of every customer who added something (the scored population
    of the unfiltered MAP@k), ranked by the same model scores."""
    who = np.flatnonzero(snapshot.added.sum(axis=1) > 0)
    adders = Snapshot(snapshot.features.iloc[who], snapshot.added[who])
    scores = scorer.score_inputs(frame_inputs(scorer, adders.features))
    return served_part(adders, scores, scorer.product_ids, k, served, today)


def served_part(
    snapshot: Snapshot,
    scores: np.ndarray,
    product_ids: Sequence[str],
    k: int,
    served: ServedFilter,
    today: date,
) -> ServedPart:
    """Served lists of every row of ``snapshot`` from its ``(rows, products)`` scores."""
    allowed = allowed_matrix(snapshot.features, product_ids, served, today)
    actual = [set(np.flatnonzero(row).tolist()) for row in snapshot.added > 0]
    return ServedPart(actual, served_rankings(scores, allowed, k))


def served_metrics(parts: Sequence[ServedPart], k: int, channel: str) -> dict[str, float | str]:
    """``served_map_at_k`` (Kaggle AP@k of the served list, normalised by
    ``min(|added|, k)`` as the unfiltered figure, so a product the customer added but may
    not be shown counts as a miss), the share of customers with an empty served list, and
    the channel."""
    actual = [a for p in parts for a in p.actual]
    lists = [s for p in parts for s in p.lists]
    return {
        f"served_map_at_{k}": map_at_k(actual, lists, k),
        "served_empty_share": sum(not s for s in lists) / len(lists) if lists else 0.0,
        "served_channel": channel,
    }
