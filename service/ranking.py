"""Keep the top ``k`` of the arbitrated candidates, within today's channel capacity."""

from __future__ import annotations

from collections.abc import Sequence

from core.suitability import Exclusion, Rule
from service.arbitration import Priority


def top_offers(
    ordered: Sequence[Priority], k: int, capacity: int, channel: str, daily_cap: int
) -> tuple[list[Priority], list[Exclusion]]:
    """The first ``min(k, capacity)`` candidates, and the ones the daily cap cut from the top k.

    ``capacity`` is how many more offers the channel's daily cap allows for this customer
    (``contact_policy.daily_capacity``); a candidate that would have made the top ``k`` but
    for the cap is recorded as excluded by the contact policy.
    """
    shown = min(k, capacity)
    cut = [
        Exclusion(
            item.product.id,
            Rule.CONTACT_POLICY,
            f"daily cap of {daily_cap} offers on {channel} reached",
        )
        for item in ordered[shown:k]
    ]
    return list(ordered[:shown]), cut
