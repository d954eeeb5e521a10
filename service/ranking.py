"""Order the suitable products and keep the top ``k``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from core.catalogue import Product


def rank(
    allowed: Sequence[Product], scores: Mapping[str, float], k: int
) -> list[tuple[Product, float | None]]:
    """Retention treatments first (by business value), then products by score; top ``k``.

    Retention treatments are only in ``allowed`` when the caller decided they apply (churn
    risk high); they carry no model score (``None``). A product without a finite score
    (unknown to the model) is not ranked at all: nothing is offered that the ranking could
    not place. Ties keep catalogue order (``sorted`` is stable), so answers are repeatable.
    """
    retention = sorted((p for p in allowed if p.retention), key=lambda p: -p.business_value)
    scored = [
        (p, float(scores[p.id]))
        for p in allowed
        if not p.retention and p.id in scores and math.isfinite(scores[p.id])
    ]
    scored.sort(key=lambda pair: -pair[1])
    ranked: list[tuple[Product, float | None]] = [(p, None) for p in retention]
    ranked += scored
    return ranked[:k]
