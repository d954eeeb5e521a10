"""Customer moments -> treatment candidates: which treatments a record's moments trigger.

A treatment (``retention: true`` in the catalogue) is never a cross-sell candidate: it
becomes one only when a trigger of ``core/decisioning.yaml`` fires for this customer today:

* ``churn`` - churn probability >= ``retention.churn_threshold`` (or lifecycle stage with
  ``retention_first``): the treatments of category ``retention``, propensity = the churn
  probability (1 without a churn model), boost ``retention.boost``;
* ``maturity`` - a contract of ``moments.maturity.contract_products`` in the record's
  ``maturities`` matures in ``0..lead_days`` days and the maturity model puts the
  probability that its money leaves at or above ``outflow_threshold``: the treatment for its
  amount, propensity = that probability. No maturity model loaded -> no maturity treatment;
* ``upgrade`` - ``upgrade_candidate`` is true and the three growth figures are known;
* ``date_rule:<name>`` - today's month is in the rule's window around the record's month;
* ``stage:<stage>`` - the lifecycle stage's own treatments (win-back for ``churned``).

Rule triggers (upgrade, date rules, stages) have propensity 1. When two triggers offer the
same product, the one with the higher propensity x boost stands. A stage with
``treatments_only`` keeps its own treatments and nothing else. This module only proposes:
every treatment then goes through the same suitability, eligibility, channel and contact
rules as any product (``service.decision.recommend.decide``).

Why a module of its own: the triggers read only the record, the config and the models,
so they are tested on hand-built records without Redis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple, cast

from core.catalogue import Catalogue, Product
from core.customer_facts import iso_date
from core.decisioning import (
    STAGES,
    TIERS,
    DateRule,
    DecisioningConfig,
    MaturityTrigger,
    Stage,
    StageLevers,
    Tier,
)
from core.object_tables import ObjectTable
from core.scoring.base import Reason
from core.scoring.maturity import MaturityScorer
from service.decision.churn_risk import ChurnRisk

RULE_PROPENSITY = 1.0
"""Propensity of a treatment a rule (upgrade, date rule, stage) triggers."""


@dataclass(frozen=True)
class Treatment:
    """One treatment a trigger made a candidate, with its arbitration inputs and reasons."""

    product: Product
    trigger: str  # churn | maturity | upgrade | date_rule:<name> | stage:<stage>
    propensity: float
    boost: float
    reasons: tuple[Reason, ...]
    contract: str | None = None  # the pseudonymous contract key of a maturity treatment

    @property
    def strength(self) -> float:
        return self.propensity * self.boost

    def as_record(self) -> dict[str, object]:
        return {
            "product_id": self.product.id,
            "trigger": self.trigger,
            "propensity": self.propensity,
            "boost": self.boost,
            "contract": self.contract,
        }


@dataclass(frozen=True)
class Moments:
    """The customer's stage and tier and the treatments their moments trigger today."""

    stage: Stage | None = None
    tier: Tier | None = None
    treatments: Mapping[str, Treatment] = field(default_factory=dict)  # product id -> one
    levers: StageLevers | None = None  # the stage's levers, when the config has the stage

    @property
    def cross_sell(self) -> bool:
        return self.levers is None or (self.levers.cross_sell and not self.levers.treatments_only)

    def allows_cross_sell(self, product: Product) -> bool:
        """Whether the stage lets ``product`` (holdable) be a candidate."""
        if not self.cross_sell:
            return False
        allowed = self.levers.categories if self.levers is not None else None
        return allowed is None or product.category in allowed

    def stage_lever(self, product: Product) -> float:
        return self.levers.boosts.lever_for(product) if self.levers is not None else 1.0

    def as_record(self) -> dict[str, object]:
        return {
            "lifecycle_stage": self.stage,
            "tier": self.tier,
            "treatments": [t.as_record() for t in self.treatments.values()],
        }


def stage_of(record: Mapping[str, Any] | None) -> Stage | None:
    """The record's lifecycle stage when it is a known one, else ``None``."""
    value = record.get("lifecycle_stage") if record is not None else None
    return cast(Stage, value) if isinstance(value, str) and value in STAGES else None


def tier_of(record: Mapping[str, Any] | None) -> Tier | None:
    """The record's tier when it is a known one, else ``None``."""
    value = record.get("tier") if record is not None else None
    return cast(Tier, value) if isinstance(value, str) and value in TIERS else None


def churn_triggered(churn: ChurnRisk | None, config: DecisioningConfig) -> bool:
    """Churn retention is triggered when churn risk reaches the configured threshold."""
    return churn is not None and churn.probability >= config.retention.churn_threshold


def customer_moments(
    record: Mapping[str, Any] | None,
    catalogue: Catalogue,
    config: DecisioningConfig,
    churn: ChurnRisk | None,
    maturity_model: MaturityScorer | None,
    today: date,
) -> Moments:
    """Stage, tier and triggered treatments of one customer (none without a record)."""
    if record is None:
        return Moments()
    moments = config.moments
    stage, tier = stage_of(record), tier_of(record)
    levers = moments.stages.get(stage) if stage is not None else None
    products = _treatments_of(catalogue).by_id
    found: list[Treatment] = []
    if levers is not None and levers.treatments_only:
        found += _stage_treatments(stage, levers, products)
        return Moments(stage, tier, _strongest(found), levers)
    if moments.maturity is not None and maturity_model is not None:
        found += _maturity(record, moments.maturity, maturity_model, products, catalogue, today)
    retention_first = levers is not None and levers.retention_first
    if churn_triggered(churn, config) or retention_first:
        found += _churn(catalogue, config, churn, stage if retention_first else None)
    if moments.upgrade is not None and moments.upgrade.product in products:
        found += _upgrade(record, products[moments.upgrade.product], moments.upgrade.boost)
    for rule in moments.date_rules:
        if rule.product in products and _date_rule_applies(rule, record, today):
            reason = Reason("date_rule", rule.text)
            trigger = f"date_rule:{rule.name}"
            product = products[rule.product]
            found.append(Treatment(product, trigger, RULE_PROPENSITY, rule.boost, (reason,)))
    if levers is not None:
        found += _stage_treatments(stage, levers, products)
    return Moments(stage, tier, _strongest(found), levers)


class _CatalogueTreatments(NamedTuple):
    """What the triggers read from one catalogue, worked out once per catalogue object."""

    catalogue: Catalogue
    by_id: dict[str, Product]  # the treatments (``retention: true``) by id
    churn: tuple[Product, ...]  # the churn trigger's: treatments of category ``retention``
    names: dict[str, str]  # every product's name by id (a maturing contract's product)


_TREATMENTS: ObjectTable[_CatalogueTreatments] = ObjectTable(64)


def _treatments_of(catalogue: Catalogue) -> _CatalogueTreatments:
    """The :class:`_CatalogueTreatments` of ``catalogue`` (a reload brings a new object,
    hence new entries; the entry holds the catalogue, so its id is not reused meanwhile)."""
    return _TREATMENTS.get((catalogue,), None, lambda: _catalogue_treatments(catalogue))


def _catalogue_treatments(catalogue: Catalogue) -> _CatalogueTreatments:
    products = catalogue.products
    return _CatalogueTreatments(
        catalogue,
        {p.id: p for p in products if p.retention},
        tuple(p for p in products if p.retention and p.category == "retention"),
        {p.id: p.name for p in products},
    )


def _strongest(found: Iterable[Treatment]) -> dict[str, Treatment]:
    """One treatment per product: the strongest trigger's (the first on a tie)."""
    best: dict[str, Treatment] = {}
    for treatment in found:
        current = best.get(treatment.product.id)
        if current is None or treatment.strength > current.strength:
            best[treatment.product.id] = treatment
    return best


def _churn(
    catalogue: Catalogue, config: DecisioningConfig, churn: ChurnRisk | None, stage: str | None
) -> list[Treatment]:
    if churn is not None and churn.probability >= config.retention.churn_threshold:
        reason = Reason("retention", f"retention priority: churn risk {churn.band.value}")
    else:
        reason = Reason("retention", f"retention first: lifecycle stage {stage}")
    propensity = churn.probability if churn is not None else RULE_PROPENSITY
    return [
        Treatment(p, "churn", propensity, config.retention.boost, (reason,))
        for p in _treatments_of(catalogue).churn
    ]


def _maturity(
    record: Mapping[str, Any],
    trigger: MaturityTrigger,
    model: MaturityScorer,
    treatments: Mapping[str, Product],
    catalogue: Catalogue,
    today: date,
) -> list[Treatment]:
    """A treatment per contract maturing within the lead time and likely to leave."""
    contracts = record.get("maturities")
    if not isinstance(contracts, list):
        return []
    names = _treatments_of(catalogue).names
    found: list[Treatment] = []
    for contract in contracts:
        if not isinstance(contract, Mapping) or contract.get("product") not in (
            trigger.contract_products
        ):
            continue
        due = iso_date(contract.get("maturity_date"))
        amount = _amount(contract.get("amount"))
        if due is None or amount is None or not 0 <= (due - today).days <= trigger.lead_days:
            continue
        probability = float(model.outflow_probability(record, contract, today))
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"maturity model returned {probability!r}, not a probability")
        product = treatments.get(trigger.treatment_for(amount))
        if probability < trigger.outflow_threshold or product is None:
            continue
        days = (due - today).days
        when = "today" if days == 0 else f"in {days} day{'s' if days > 1 else ''}"
        text = (
            f"your {names.get(str(contract['product']), 'contract').lower()} matures on "
            f"{due.isoformat()} ({when}); amount band {trigger.amount_band(amount)};"
            f" risk that the money leaves: {probability:.0%}"
        )
        key = contract.get("contract")
        found.append(
            Treatment(
                product,
                "maturity",
                probability,
                trigger.boost,
                (Reason("maturity", text),),
                key if isinstance(key, str) else None,
            )
        )
    return found


def _upgrade(record: Mapping[str, Any], product: Product, boost: float) -> list[Treatment]:
    """The upgrade journey, when the record says so and its three figures are known."""
    if record.get("upgrade_candidate") is not True:
        return []
    growth = [_number(record.get(f"aum_growth_m{n}")) for n in (3, 2, 1)]
    if any(g is None for g in growth):
        return []
    figures = ", ".join(f"{g * 100:+.1f}%" for g in growth if g is not None)
    text = f"assets grew {figures} in each of the last three months (oldest first)"
    return [Treatment(product, "upgrade", RULE_PROPENSITY, boost, (Reason("upgrade", text),))]


def _date_rule_applies(rule: DateRule, record: Mapping[str, Any], today: date) -> bool:
    value = record.get(rule.anchor)
    if type(value) is int and 1 <= value <= 12:  # the usual case, as read below
        return rule.applies(value, today.month)
    month = _number(value)
    if month is None or not month.is_integer() or not 1 <= month <= 12:
        return False
    return rule.applies(int(month), today.month)


def _stage_treatments(
    stage: str | None, levers: StageLevers, treatments: Mapping[str, Product]
) -> list[Treatment]:
    if not levers.treatments:
        return []
    what = "win-back offer" if stage == "churned" else "offer for this stage"
    reason = Reason("lifecycle_stage", f"lifecycle stage {stage}: {what}")
    return [
        Treatment(treatments[pid], f"stage:{stage}", RULE_PROPENSITY, levers.boost, (reason,))
        for pid in levers.treatments
        if pid in treatments
    ]


def _number(value: object) -> float | None:
    """A finite number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _amount(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None
