"""Customer-moment rules (``core/moments.yaml``): tier thresholds, upgrade, lifecycle.

The features of ``features/moment_features.py`` read their parameters from here, so a
bank changes a threshold in the file, not in code. Loading validates every key and names
the bad one, e.g. ``moments.yaml: tiers.private_from: must exceed affluent_from``.
Why a file of its own: these are marketing rules with a version of their own, recorded
with every feature set and training run (``moments_version``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.yaml_config import load_yaml_model

DEFAULT_MOMENTS_PATH = Path(__file__).resolve().parent / "moments.yaml"

Tier = Literal["mass", "affluent", "private"]
LifecycleStage = Literal["prospect", "new", "growing", "mature", "at_risk", "dormant", "churned"]
LIFECYCLE_STAGES: tuple[LifecycleStage, ...] = (
    "prospect",
    "new",
    "growing",
    "mature",
    "at_risk",
    "dormant",
    "churned",
)
MAX_GROWTH_MONTHS = 3
"""The feature records carry three monthly growth figures (``aum_growth_m1..m3``)."""


class MomentsError(ValueError):
    """The moments file is unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierThresholds(_Strict):
    """Tier by assets under management: mass below ``affluent_from``, private from
    ``private_from``, affluent between."""

    affluent_from: float = Field(gt=0)
    private_from: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TierThresholds:
        if self.private_from <= self.affluent_from:
            raise ValueError("private_from must exceed affluent_from")
        return self

    def tier_for(self, assets: float) -> Tier:
        """The tier of ``assets`` (a known amount)."""
        if assets >= self.private_from:
            return "private"
        return "affluent" if assets >= self.affluent_from else "mass"


class UpgradeRule(_Strict):
    """Mass customers whose assets grew by more than ``min_growth`` in each of the last
    ``months`` months."""

    min_growth: float = Field(ge=0)
    months: int = Field(ge=1, le=MAX_GROWTH_MONTHS)


class LifecycleRules(_Strict):
    """Parameters of the stage rules (their order and meaning: docs/moments.md)."""

    win_back_months: int = Field(ge=0)
    dormant_months_inactive: int = Field(ge=1)
    at_risk_months_without_login: int = Field(ge=1)
    at_risk_asset_drop_3m: float = Field(gt=0, le=1)
    at_risk_products_dropped_3m: int = Field(ge=1)
    new_max_tenure_months: int = Field(ge=1)
    growing_min_aum_growth_3m: float = Field(gt=0)
    growing_min_products_added_3m: int = Field(ge=1)

    @model_validator(mode="after")
    def _dormant_after_at_risk(self) -> LifecycleRules:
        if self.dormant_months_inactive <= self.at_risk_months_without_login:
            raise ValueError(
                "dormant_months_inactive must exceed at_risk_months_without_login "
                "(dormant is the longer silence)"
            )
        return self


class MomentsConfig(_Strict):
    """The whole file."""

    version: str = Field(min_length=1)
    tiers: TierThresholds
    upgrade: UpgradeRule
    lifecycle: LifecycleRules


def load_moments(path: Path | str = DEFAULT_MOMENTS_PATH) -> MomentsConfig:
    """Read and validate a moments file; raise :class:`MomentsError` naming the bad key."""
    return load_yaml_model(
        path,
        MomentsConfig,
        MomentsError,
        "moments config",
        expected="a mapping with 'version', 'tiers', 'upgrade' and 'lifecycle'",
    )


@lru_cache(maxsize=1)
def default_moments() -> MomentsConfig:
    """The shipped ``core/moments.yaml`` (read once per process)."""
    return load_moments(DEFAULT_MOMENTS_PATH)
