"""Decisioning configuration (``core/decisioning.yaml``), validated like the catalogue.

What it holds and how the service uses it is in ``docs/decisioning.md``: the retention
threshold and boost, a context weight per channel (and per category on a channel),
levers per category and product, channel rules (e.g. complex products on the advisor
channel only) and the customer moments (``moments``: the maturity trigger, levers per
lifecycle stage, service levels per tier, the upgrade journey and date rules). Loading
checks every field and that every product, category, channel, stage and tier it names
exists, and names the offending entry or rule, e.g.
``decisioning.yaml: levers.products.mortage: unknown product`` or
``decisioning.yaml: moments.date_rules[0] (birthday_month).product: unknown product``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.catalogue import Catalogue, Category, Product
from core.tables import CHANNELS


class DecisioningError(ValueError):
    """The decisioning file is unreadable or invalid."""


class RetentionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    churn_threshold: float = Field(
        ge=0, le=1, description="Churn probability making retention eligible."
    )
    boost: float = Field(gt=0, description="Multiplier of a retention treatment's priority.")


class ChannelContext(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(1.0, gt=0)
    categories: dict[Category, float] = Field(default_factory=dict)

    def weight_for(self, product: Product) -> float:
        return self.weight * self.categories.get(product.category, 1.0)


class Levers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: dict[Category, float] = Field(default_factory=dict)
    products: dict[str, float] = Field(default_factory=dict)

    def lever_for(self, product: Product) -> float:
        return self.categories.get(product.category, 1.0) * self.products.get(product.id, 1.0)


class ChannelRule(BaseModel):
    """Products of ``categories`` (at ``min_risk_level`` or above) only on ``channels``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    categories: tuple[Category, ...] = Field(min_length=1)
    min_risk_level: int = Field(1, ge=1, le=5)
    channels: tuple[str, ...] = Field(min_length=1)

    def applies_to(self, product: Product) -> bool:
        return product.category in self.categories and product.risk_level >= self.min_risk_level


Stage = Literal["prospect", "new", "growing", "mature", "at_risk", "dormant", "churned"]
STAGES: tuple[str, ...] = get_args(Stage)
"""Lifecycle stages a feature record's ``lifecycle_stage`` may hold."""
Tier = Literal["mass", "affluent", "private"]
TIERS: tuple[str, ...] = get_args(Tier)
"""Service tiers a feature record's ``tier`` may hold."""


class MaturityTreatment(BaseModel):
    """The treatment offered for a maturing contract of at least ``min_amount``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product: str
    min_amount: float = Field(ge=0)


class MaturityTrigger(BaseModel):
    """A contract maturing within ``lead_days`` whose money is likely to leave the bank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_days: int = Field(7, ge=0, le=366, description="Days before maturity it starts.")
    outflow_threshold: float = Field(ge=0, le=1, description="Outflow probability needed.")
    boost: float = Field(gt=0, description="Multiplier of the treatment's priority.")
    contract_products: tuple[str, ...] = Field(
        min_length=1, description="Catalogue products whose contracts trigger it."
    )
    amount_bands: tuple[float, ...] = Field(
        min_length=1, description="Edges of the amount bands named in reasons (ascending)."
    )
    treatments: tuple[MaturityTreatment, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> MaturityTrigger:
        edges = self.amount_bands
        if any(edge <= 0 for edge in edges) or list(edges) != sorted(set(edges)):
            raise ValueError("amount_bands must be positive and strictly ascending")
        floors = [t.min_amount for t in self.treatments]
        if floors[0] != 0 or floors != sorted(set(floors)):
            raise ValueError("treatments: min_amount must start at 0 and strictly ascend")
        return self

    def treatment_for(self, amount: float) -> str:
        """The product offered for a contract of ``amount`` (the highest floor it reaches)."""
        chosen = self.treatments[0].product
        for treatment in self.treatments:
            if amount >= treatment.min_amount:
                chosen = treatment.product
        return chosen

    def amount_band(self, amount: float) -> str:
        """The band of ``amount`` as text, e.g. ``10,000-50,000``; never the amount itself."""
        lower: float | None = None
        for edge in self.amount_bands:
            if amount < edge:
                return f"under {edge:,.0f}" if lower is None else f"{lower:,.0f}-{edge:,.0f}"
            lower = edge
        return f"{lower:,.0f} and over"


class StageLevers(BaseModel):
    """What one lifecycle stage allows and boosts (``docs/decisioning.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cross_sell: bool = Field(True, description="Holdable products are candidates at all.")
    categories: tuple[Category, ...] | None = Field(
        None, description="Cross-sell restricted to these categories (null: all)."
    )
    boosts: Levers = Field(Levers(), description="Extra levers per category / product.")
    retention_first: bool = Field(
        False, description="Churn retention treatments are candidates whatever the risk."
    )
    treatments: tuple[str, ...] = Field((), description="Treatments the stage itself offers.")
    treatments_only: bool = Field(
        False, description="Only the stage's treatments: no cross-sell, no other trigger."
    )
    boost: float = Field(1.0, gt=0, description="Multiplier of the stage treatments' priority.")


class TierService(BaseModel):
    """A tier's service level: the channels it is contacted on and its caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: tuple[str, ...] = Field(min_length=1)
    channel_daily_cap: int | None = Field(None, ge=0)
    max_impressions: int | None = Field(None, ge=1)


class UpgradeJourney(BaseModel):
    """The treatment offered to an ``upgrade_candidate`` (assets growing fast, mass tier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product: str
    boost: float = Field(gt=0)


class DateRule(BaseModel):
    """A treatment offered in a window of months around a month the record holds.

    ``anchor`` names the record field (``birth_month``: 1-12); the window runs from
    ``months_before`` that month to ``months_after`` it, and must be shorter than a year.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    anchor: Literal["birth_month"]
    months_before: int = Field(0, ge=0, le=11)
    months_after: int = Field(0, ge=0, le=11)
    product: str
    boost: float = Field(1.0, gt=0)
    text: str = Field(min_length=1, description="The reason shown with the offer.")

    @model_validator(mode="after")
    def _window(self) -> DateRule:
        if self.months_before + self.months_after > 11:
            raise ValueError("window of months_before + months_after must be under 12 months")
        return self

    def applies(self, anchor_month: int, month: int) -> bool:
        """True when ``month`` (1-12) is in the window around ``anchor_month`` (1-12)."""
        offset = (month - anchor_month) % 12  # months after the anchor, 0..11
        return offset <= self.months_after or 12 - offset <= self.months_before


class MomentsConfig(BaseModel):
    """Customer moments: what turns a feature record's moment fields into treatments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    maturity: MaturityTrigger | None = None
    stages: dict[str, StageLevers] = Field(default_factory=dict)
    tiers: dict[str, TierService] = Field(default_factory=dict)
    upgrade: UpgradeJourney | None = None
    date_rules: tuple[DateRule, ...] = ()

    @model_validator(mode="after")
    def _unique_rules(self) -> MomentsConfig:
        names = [rule.name for rule in self.date_rules]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"date_rules[{i}] ({name}): duplicate rule name")
        return self


class DecisioningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    retention: RetentionConfig
    channels: dict[str, ChannelContext] = Field(default_factory=dict)
    levers: Levers = Levers()
    channel_rules: tuple[ChannelRule, ...] = ()
    moments: MomentsConfig = MomentsConfig()

    def context_weight(self, channel: str, product: Product) -> float:
        """Weight of ``product`` on ``channel`` (1.0 for a channel the file does not list)."""
        context = self.channels.get(channel)
        return context.weight_for(product) if context is not None else 1.0

    def channel_rule_against(self, channel: str, product: Product) -> ChannelRule | None:
        """The first rule that forbids ``product`` on ``channel``, or ``None``."""
        for rule in self.channel_rules:
            if rule.applies_to(product) and channel not in rule.channels:
                return rule
        return None


def _check_names(config: DecisioningConfig, catalogue: Catalogue) -> list[str]:
    """References to channels and products that do not exist."""
    problems: list[str] = []
    known = set(catalogue.ids)
    for channel in config.channels:
        if channel not in CHANNELS:
            problems.append(f"channels.{channel}: unknown channel (known: {', '.join(CHANNELS)})")
    for product_id in config.levers.products:
        if product_id not in known:
            problems.append(f"levers.products.{product_id}: unknown product")
    for i, rule in enumerate(config.channel_rules):
        for channel in rule.channels:
            if channel not in CHANNELS:
                problems.append(f"channel_rules[{i}] ({rule.name}).channels: unknown {channel!r}")
    return problems


def _check_moments(moments: MomentsConfig, catalogue: Catalogue) -> list[str]:
    """Stages, tiers, channels and products of ``moments`` that do not exist or do not fit.

    A product a trigger offers must be a treatment (``retention: true`` in the catalogue):
    treatments are candidates only when their trigger fires, never as cross-sell.
    """
    problems: list[str] = []
    known = {p.id: p for p in catalogue.products}

    def treatment(where: str, product_id: str) -> None:
        product = known.get(product_id)
        if product is None:
            problems.append(f"{where}: unknown product {product_id!r}")
        elif not product.retention:
            problems.append(f"{where}: {product_id!r} is not a treatment (retention: true)")

    if moments.maturity is not None:
        for i, item in enumerate(moments.maturity.treatments):
            treatment(f"moments.maturity.treatments[{i}].product", item.product)
        for product_id in moments.maturity.contract_products:
            if product_id not in known:
                problems.append(
                    f"moments.maturity.contract_products: unknown product {product_id!r}"
                )
    for stage, levers in moments.stages.items():
        where = f"moments.stages.{stage}"
        if stage not in STAGES:
            problems.append(f"{where}: unknown stage (known: {', '.join(STAGES)})")
        for product_id in levers.boosts.products:
            if product_id not in known:
                problems.append(f"{where}.boosts.products.{product_id}: unknown product")
        for product_id in levers.treatments:
            treatment(f"{where}.treatments", product_id)
        if levers.treatments_only and not levers.treatments:
            problems.append(f"{where}.treatments_only: no treatments listed")
    for tier, service in moments.tiers.items():
        if tier not in TIERS:
            problems.append(f"moments.tiers.{tier}: unknown tier (known: {', '.join(TIERS)})")
        for channel in service.channels:
            if channel not in CHANNELS:
                problems.append(f"moments.tiers.{tier}.channels: unknown channel {channel!r}")
    if moments.upgrade is not None:
        treatment("moments.upgrade.product", moments.upgrade.product)
    for i, rule in enumerate(moments.date_rules):
        treatment(f"moments.date_rules[{i}] ({rule.name}).product", rule.product)
    return problems


def _where(raw: object, loc: tuple[int | str, ...]) -> str:
    """A pydantic location as text, a list item named by its rule: ``date_rules[0] (x).y``."""
    parts: list[str] = []
    node: Any = raw
    for key in loc:
        if isinstance(key, int) and parts:
            item = node[key] if _has(node, key) else None
            name = item.get("name") if isinstance(item, dict) else None
            parts[-1] += f"[{key}]" + (f" ({name})" if name else "")
        else:
            parts.append(str(key))
        node = node[key] if _has(node, key) else None
    return ".".join(parts) or "<root>"


def _has(node: Any, key: int | str) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)


def load_decisioning(path: Path | str, catalogue: Catalogue) -> DecisioningConfig:
    """Read and validate a decisioning file against ``catalogue``; raise naming the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DecisioningError(f"{path}: cannot read decisioning config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise DecisioningError(
            f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from exc
    if not isinstance(raw, dict):
        raise DecisioningError(f"{path}: expected a mapping with 'version' and 'retention'")
    try:
        config = DecisioningConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {_where(raw, tuple(err['loc']))}: {err['msg']}" for err in exc.errors()]
        raise DecisioningError("\n".join(lines)) from exc
    problems = _check_names(config, catalogue) + _check_moments(config.moments, catalogue)
    if problems:
        raise DecisioningError("\n".join(f"{path}: {p}" for p in problems))
    return config
