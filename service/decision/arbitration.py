"""Arbitration: order the suitable candidates by one priority (Pega-style).

    priority = propensity x P(accept) x channel affinity x business value
               x context weight (channel) x lever

* propensity - the recommender's score for a cross-sell product (popularity in the fallback,
  1 when the fallback has no model at all); for a retention treatment, the customer's churn
  probability;
* P(accept), channel affinity - ``service.decision.acceptance``: the response model's
  probability that this offer is taken now on this channel (contact fatigue included) and
  the customer's smoothed responsiveness on the channel; both 1 (recorded as ``None``)
  without a response model, so the priority is then the four other factors' alone;
* business value - the catalogue's value of one acceptance to the bank;
* context weight - ``decisioning.yaml`` ``channels.<channel>``: its weight times the factor
  of the product's category on that channel;
* lever - ``levers.categories.<category> x levers.products.<product>`` (campaign levers),
  times the lifecycle stage's ``boosts`` (``moments.stages.<stage>.boosts``);
* a treatment is a candidate only when a trigger fired (``service.decision.moments``: churn
  risk at ``retention.churn_threshold``, a maturing contract, the upgrade journey, a date
  rule, the lifecycle stage); its propensity and boost are the trigger's (churn: the churn
  probability and ``retention.boost``), which is what lets it outrank cross-sell.

Arbitration runs on products that already passed the hard suitability and eligibility
filter, the channel rules and the contact policy: it can reorder them, never add one.
Ties keep catalogue order (``sorted`` is stable), so answers are repeatable.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import NamedTuple

from core.catalogue import Product
from core.decisioning import DecisioningConfig, StageLevers
from core.object_tables import ObjectTable
from core.scoring.base import Reason
from core.suitability import Exclusion, Rule
from service.decision.acceptance import Acceptance
from service.decision.churn_risk import ChurnRisk
from service.decision.moments import Moments, Treatment, churn_triggered

NO_ACCEPTANCE = Acceptance()
"""No response model: no factors."""


class Priority(NamedTuple):
    """One candidate's arbitration inputs and result (recorded in the audit trail).

    A named tuple (immutable, built faster than a frozen dataclass: one per candidate per
    request).
    """

    product: Product
    propensity: float
    business_value: float
    context_weight: float
    lever: float
    boost: float  # the trigger's boost; 1 for cross-sell
    priority: float
    trigger: str | None = None  # what made a treatment a candidate; None for cross-sell
    p_accept: float | None = None  # None: no response model (a factor of 1)
    channel_affinity: float | None = None  # None: no response model (a factor of 1)

    def as_record(self) -> dict[str, object]:
        return {
            "product_id": self.product.id,
            "propensity": self.propensity,
            "business_value": self.business_value,
            "context_weight": self.context_weight,
            "lever": self.lever,
            "boost": self.boost,
            "priority": self.priority,
            "trigger": self.trigger,
            "p_accept": self.p_accept,
            "channel_affinity": self.channel_affinity,
        }


def retention_eligible(churn: ChurnRisk | None, config: DecisioningConfig) -> bool:
    """Churn retention is triggered when churn risk reaches the configured threshold."""
    return churn_triggered(churn, config)


class ChannelFactors:
    """One decisioning config's static inputs on one channel, per product, worked out once.

    A product's context weight, campaign lever and the channel rule against it depend on
    the config, the channel and the product only, and its whole lever also on the lifecycle
    stage's levers; yet each request would ask the config for them product by product (a
    few dictionary lookups and a loop over the rules each). Kept per product object (``id``
    plus the object itself, so a product of another catalogue with the same id is never
    mistaken for it); :func:`channel_factors` keeps one table per (config, channel).
    """

    __slots__ = ("_levered", "_static", "channel", "config")

    def __init__(self, config: DecisioningConfig, channel: str) -> None:
        self.config = config
        self.channel = channel
        self._static: dict[int, tuple[Product, float, float, Exclusion | None]] = {}
        self._levered: dict[int, tuple[StageLevers | None, dict[int, Levered]]] = {}

    def of(self, product: Product) -> tuple[float, float, Exclusion | None]:
        """(context weight, campaign lever, the channel rule's exclusion or None)."""
        known = self._static.get(id(product))
        if known is None or known[0] is not product:
            known = self._learn(product)
        return known[1], known[2], known[3]

    def _learn(self, product: Product) -> tuple[Product, float, float, Exclusion | None]:
        config, channel = self.config, self.channel
        rule = config.channel_rule_against(channel, product)
        excluded = (
            None
            if rule is None
            else Exclusion(
                product.id,
                Rule.CHANNEL,
                f"{rule.name}: only on {', '.join(rule.channels)}, not {channel}",
            )
        )
        known = (
            product,
            config.context_weight(channel, product),
            config.levers.lever_for(product),
            excluded,
        )
        self._static[id(product)] = known
        return known

    def split(self, products: Sequence[Product]) -> tuple[list[Product], list[Exclusion]]:
        """:func:`split_by_channel` with this table: (kept, in order; the channel rule's
        exclusions)."""
        static = self._static
        kept: list[Product] = []
        excluded: list[Exclusion] = []
        for product in products:
            known = static.get(id(product))
            if known is None or known[0] is not product:
                known = self._learn(product)
            if known[3] is None:
                kept.append(product)
            else:
                excluded.append(known[3])
        return kept, excluded

    def levered(self, levers: StageLevers | None) -> dict[int, Levered]:
        """Product object id -> :data:`Levered` under the stage's ``levers`` (filled by
        :meth:`levered_of`)."""
        known = self._levered.get(id(levers))
        if known is None or known[0] is not levers:
            known = self._levered[id(levers)] = (levers, {})
        return known[1]

    def levered_of(
        self, product: Product, levers: StageLevers | None, table: dict[int, Levered]
    ) -> Levered:
        """``product``'s :data:`Levered` under ``levers``, added to ``table``."""
        context, campaign_lever, _ = self.of(product)
        stage_lever = levers.boosts.lever_for(product) if levers is not None else 1.0
        known = table[id(product)] = (product, context, campaign_lever * stage_lever)
        return known


Levered = tuple[Product, float, float]
"""(product, context weight, lever: the campaign lever x the stage's) of one product on one
channel under one stage's levers."""


_FACTORS: ObjectTable[ChannelFactors] = ObjectTable(256)


def channel_factors(config: DecisioningConfig, channel: str) -> ChannelFactors:
    """The :class:`ChannelFactors` of ``config`` on ``channel`` (kept while the config lives;
    a hot reload brings a new config object, hence a new table)."""
    return _FACTORS.get((config,), channel, lambda: ChannelFactors(config, channel))


def split_by_channel(
    products: Sequence[Product], channel: str, config: DecisioningConfig
) -> tuple[list[Product], list[Exclusion]]:
    """Remove products a channel rule keeps off ``channel`` (rule ``channel``)."""
    return channel_factors(config, channel).split(products)


_MAX_PRIORITY = sys.float_info.max
_NAN = math.nan
_new_tuple = tuple.__new__


def arbitrate(
    allowed: Sequence[Product],
    propensities: Mapping[str, float],
    moments: Moments,
    channel: str,
    config: DecisioningConfig,
    acceptance: Acceptance | None = None,
) -> list[Priority]:
    """Priorities of ``allowed``, highest first.

    A cross-sell product without a finite propensity (unknown to the model), or any
    candidate without a finite P(accept) when a response model is used, is left out:
    nothing is offered that arbitration could not place. A treatment is placed only when a
    trigger of ``moments`` made it a candidate (the caller normally leaves it out of
    ``allowed`` otherwise).

    The product's context weight and lever come from the (config, channel, stage levers)
    table of :class:`ChannelFactors`; the factors are multiplied in the order of the
    formula in the module docstring, so the priority is the same float whichever way they
    were looked up.
    """
    priorities: list[Priority] = []
    factors = channel_factors(config, channel)
    levers = moments.levers
    table = factors.levered(levers)
    treatments = moments.treatments
    modelled = acceptance is not None and acceptance.modelled
    isfinite = math.isfinite
    all_ordered = True
    for product in allowed:
        pid = product.id
        trigger: str | None = None
        if product.retention:
            treatment = treatments.get(pid)
            if treatment is None:
                continue
            propensity, boost, trigger = treatment.propensity, treatment.boost, treatment.trigger
        else:
            propensity = propensities.get(pid, _NAN)
            if not isfinite(propensity):
                continue
            boost = 1.0
        p_accept: float | None = None
        affinity: float | None = None
        taken = 1.0
        if modelled:
            assert acceptance is not None
            p_accept, affinity = acceptance.factors(pid)
            if p_accept is not None and not isfinite(p_accept):
                continue
            if p_accept is not None and affinity is not None:
                taken = p_accept * affinity
        known = table.get(id(product))
        if known is None or known[0] is not product:
            known = factors.levered_of(product, levers, table)
        context, lever = known[1], known[2]
        value = product.business_value
        # Finite factors can still overflow (a huge score x boosts): held at the largest
        # float, the candidate stays placed, first, with a finite priority.
        priority = propensity * taken * value * context * lever * boost
        if priority > _MAX_PRIORITY:
            priority = _MAX_PRIORITY
        elif priority < -_MAX_PRIORITY:
            priority = -_MAX_PRIORITY
        elif priority != priority:  # NaN
            all_ordered = False
        priorities.append(
            # tuple.__new__ directly: the named tuple's own __new__ is a Python function
            # that only forwards to it (one call less per candidate).
            _new_tuple(
                Priority,
                (
                    product,
                    propensity,
                    value,
                    context,
                    lever,
                    boost,
                    priority,
                    trigger,
                    p_accept,
                    affinity,
                ),
            )
        )
    if all_ordered:
        # Stable, highest first: the same order as sorting by -priority when every priority
        # is a number (ties keep catalogue order either way).
        priorities.sort(key=_PRIORITY, reverse=True)
    else:  # a NaN priority (an overflow times a zero factor): the key the order is defined by
        priorities.sort(key=_by_priority_descending)
    return priorities


_PRIORITY = itemgetter(6)  # Priority.priority


def _by_priority_descending(item: Priority) -> float:
    return -item.priority


DRIVERS = {"churn": ("churn", "retention"), "maturity": ("outflow risk", "maturity")}
"""Trigger -> (what its propensity is, the name of its boost) in the arbitration trace."""


def arbitration_reasons(item: Priority, treatment: Treatment | None, channel: str) -> list[Reason]:
    """The trigger's reasons (a treatment) and the arbitration trace, after the model's."""
    reasons: list[Reason] = list(treatment.reasons) if treatment is not None else []
    trigger = item.trigger
    if trigger:
        kind = trigger.split(":", 1)[0]
        driver, boost = DRIVERS.get(kind) or ("rule", kind)
    else:
        driver, boost = "propensity", ""
    formula = f"priority {item.priority:.4g} = {driver} {item.propensity:.3g}" + _trace_factors(
        item.business_value, channel, item.context_weight, item.lever
    )
    if item.p_accept is not None and item.channel_affinity is not None:
        formula += (
            f" x P(accept) {item.p_accept:.3g} x channel affinity {item.channel_affinity:.3g}"
        )
    if item.boost != 1.0:
        formula += f" x {boost.replace('_', ' ')} boost {item.boost:g}"
    reasons.append(Reason("arbitration", formula))
    return reasons


_TRACE_FACTORS: dict[tuple[float, str, float, float], str] = {}
_MAX_TRACE_FACTORS = 4096


def _trace_factors(value: float, channel: str, context: float, lever: float) -> str:
    """The static factors of the arbitration trace, `` x value .. x channel .. x lever ..``.

    They repeat from request to request (a product's value, weight and lever on a channel),
    so each text is formatted once. Only non-zero finite factors are kept: a key is found by
    ``==``, which would mix up 0.0 and -0.0 (formatted differently), and a NaN never
    finds its own entry.
    """
    key = (value, channel, context, lever)
    text = _TRACE_FACTORS.get(key)
    if text is None:
        text = f" x value {value:g} x channel {channel} {context:g} x lever {lever:g}"
        if value and context and lever and math.isfinite(value * context * lever):
            if len(_TRACE_FACTORS) >= _MAX_TRACE_FACTORS:
                _TRACE_FACTORS.clear()
            _TRACE_FACTORS[key] = text
    return text


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
