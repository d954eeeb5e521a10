"""How the synthetic bank's customers answer offers: the hidden behaviour of ``nbo simulate``.

The service never sees these rules; it only sees the events they produce. Per offer shown::

    P(accept) = min(MAX_ACCEPT, base_rate * responsiveness[c] * channel_factor(c, channel)
                                * fit[c, product] * fatigue ** shown_before)

* ``responsiveness[c]``: a per-customer log-normal factor (mean 1), drawn once from the seed;
* ``channel_factor``: ``preferred_factor`` on the customer's preferred channel (the bank's
  ``preferred_channel``; "app" when unknown), ``other_factor`` on any other;
* ``fit[c, product]``: the bank's own monthly add rate of that product for the customer's
  archetype (``features.synthetic_products``), relative to the mean rate of products on
  sale, clipped to ``[fit_floor, fit_cap]``: offers of what such customers buy anyway land;
* ``fatigue ** shown_before``: each earlier showing of the same product lowers it.

A customer who does not accept declines explicitly with probability ``decline_share``
(otherwise says nothing). Customers visit on their preferred channel with probability
``visit_preferred``, else on another channel at random. Organic take-up (what customers
add with no offer, control included) follows the same add rates.

Every draw comes from a generator seeded by ``(seed, purpose, day, customer, product)``, so
the same arguments give the same answers whatever order the simulator asks in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from core.catalogue import Catalogue
from core.tables import CHANNELS
from features.synthetic import WARM_UP_MONTHS, month_ends
from features.synthetic_population import Population, draw_population
from features.synthetic_products import product_rules

Answer = Literal["accepted", "declined"] | None


@dataclass(frozen=True)
class ResponseRules:
    """The parameters of the hidden behaviour (see the module docstring)."""

    base_rate: float = 0.06
    preferred_factor: float = 2.5
    other_factor: float = 0.4
    fatigue: float = 0.5
    fit_floor: float = 0.2
    fit_cap: float = 4.0
    responsiveness_sigma: float = 0.5
    decline_share: float = 0.4
    visit_preferred: float = 0.7
    max_accept: float = 0.8

    def __post_init__(self) -> None:
        for name in ("base_rate", "fatigue", "decline_share", "visit_preferred", "max_accept"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")


_VISIT, _ANSWER, _ORGANIC = 1, 2, 3


def bank_population(customers: int, months: int, seed: int, end_month: date) -> Population:
    """The population ``features.synthetic.generate_bank`` drew first for these arguments
    (its customers' hidden archetypes included)."""
    steps = month_ends(end_month, months + WARM_UP_MONTHS)
    return draw_population(np.random.default_rng(seed), customers, steps, WARM_UP_MONTHS)


class HiddenBehaviour:
    """The response behaviour of one synthetic bank's customers (deterministic by seed)."""

    def __init__(
        self,
        customers: pd.DataFrame,
        archetypes: np.ndarray,
        add_rates: np.ndarray,
        product_ids: list[str],
        seed: int,
        rules: ResponseRules | None = None,
    ) -> None:
        """``archetypes[i]`` is the archetype of ``customers`` row i; ``add_rates`` the
        (archetype, product) monthly add probabilities, columns in ``product_ids`` order."""
        self.rules = rules or ResponseRules()
        self.seed = seed
        ids = customers["customer_id"].astype(str).tolist()
        self._index = {cid: i for i, cid in enumerate(ids)}
        self._products = {pid: j for j, pid in enumerate(product_ids)}
        preferred = customers["preferred_channel"].where(
            customers["preferred_channel"].isin(CHANNELS), "app"
        )
        self.preferred = preferred.astype(str).to_numpy()
        sigma = self.rules.responsiveness_sigma
        rng = np.random.default_rng([seed, 0])
        self.responsiveness = rng.lognormal(-(sigma**2) / 2, sigma, len(ids))
        self.add_rates = add_rates[archetypes]  # (customers, products)
        on_sale = add_rates[:, add_rates.max(axis=0) > 0]
        mean = float(on_sale.mean()) if on_sale.size else 1.0
        self.fit = np.clip(self.add_rates / mean, self.rules.fit_floor, self.rules.fit_cap)

    @classmethod
    def for_bank(
        cls,
        customers: pd.DataFrame,
        months: int,
        seed: int,
        catalogue: Catalogue,
        end_month: date,
        rules: ResponseRules | None = None,
    ) -> HiddenBehaviour:
        """The behaviour of the bank ``generate_bank(len(customers), months, seed, catalogue,
        end_month)`` made: its archetypes are drawn again from the same seed (the population
        is the generator's first draw)."""
        population = bank_population(len(customers), months, seed, end_month)
        product = product_rules(catalogue.holdable)
        return cls(customers, population.archetype, product.add, product.ids, seed, rules)

    def _rng(self, purpose: int, day: int, customer: int, product: int = -1) -> np.random.Generator:
        return np.random.default_rng([self.seed, purpose, day, customer, product + 1])

    def _customer(self, customer_id: str) -> int:
        try:
            return self._index[customer_id]
        except KeyError:
            raise ValueError(f"customer {customer_id!r} is not in this bank") from None

    def visit_channel(self, customer_id: str, day: int) -> str:
        """The channel ``customer_id`` uses on ``day`` (their habit: mostly the preferred)."""
        i = self._customer(customer_id)
        rng = self._rng(_VISIT, day, i)
        preferred = str(self.preferred[i])
        if rng.random() < self.rules.visit_preferred:
            return preferred
        others = [c for c in CHANNELS if c != preferred]
        return others[int(rng.integers(len(others)))]

    def accept_probability(
        self, customer_id: str, product_id: str, channel: str, shown_before: int
    ) -> float:
        """P(accept) of one offer shown (see the module docstring); 0 for a product the
        bank's customers never hold (e.g. a retention treatment)."""
        i = self._customer(customer_id)
        j = self._products.get(product_id)
        if j is None:
            return 0.0
        r = self.rules
        channel_factor = r.preferred_factor if channel == self.preferred[i] else r.other_factor
        p = (
            r.base_rate
            * self.responsiveness[i]
            * channel_factor
            * self.fit[i, j]
            * r.fatigue ** max(0, shown_before)
        )
        return float(min(r.max_accept, p))

    def answer(
        self, customer_id: str, product_id: str, channel: str, shown_before: int, day: int
    ) -> Answer:
        """``accepted``, ``declined`` or None (no answer) for one offer shown on ``day``."""
        i = self._customer(customer_id)
        j = self._products.get(product_id, len(self._products))
        rng = self._rng(_ANSWER, day, i, j + 1000 * shown_before)
        draw, decline = rng.random(2)
        if draw < self.accept_probability(customer_id, product_id, channel, shown_before):
            return "accepted"
        return "declined" if decline < self.rules.decline_share else None

    def organic_adds(self, customer_id: str, held: np.ndarray, days: int) -> np.ndarray:
        """Products (bool per ``product_ids`` column) the customer adds within ``days`` with
        no offer, at the bank's monthly add rates; never one already ``held``."""
        i = self._customer(customer_id)
        rng = self._rng(_ORGANIC, days, i)
        p = 1.0 - (1.0 - self.add_rates[i]) ** (days / 30.0)
        return (rng.random(len(p)) < p) & ~held.astype(bool)
