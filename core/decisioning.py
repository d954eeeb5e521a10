"""Decisioning configuration (``core/decisioning.yaml``), validated like the catalogue.

What it holds and how the service uses it is in ``docs/decisioning.md``: the retention
threshold and boost, a context weight per channel (and per category on a channel),
levers per category and product, and channel rules (e.g. complex products on the advisor
channel only). Loading checks every field and that every product, category and channel it
names exists, and names the offending entry, e.g.
``decisioning.yaml: levers.products.mortage: unknown product``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class DecisioningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    retention: RetentionConfig
    channels: dict[str, ChannelContext] = Field(default_factory=dict)
    levers: Levers = Levers()
    channel_rules: tuple[ChannelRule, ...] = ()

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
        lines = [
            f"{path}: {'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise DecisioningError("\n".join(lines)) from exc
    problems = _check_names(config, catalogue)
    if problems:
        raise DecisioningError("\n".join(f"{path}: {p}" for p in problems))
    return config
