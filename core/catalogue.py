"""The product catalogue: a versioned YAML file, validated on load.

A bad entry fails loading with a message naming the file, the entry (index and id) and
the field, e.g. ``catalogue.yaml: products[3] (funds).risk_level: Input should be ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.yaml_config import load_yaml_model

Category = Literal[
    "account", "deposit", "investment", "pension", "lending", "card", "service", "retention"
]


class CatalogueError(ValueError):
    """The catalogue file is unreadable or an entry is invalid."""


class Eligibility(BaseModel):
    """Who may be offered a product at all (independent of risk suitability)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_age: int | None = Field(None, ge=0, le=120)
    max_age: int | None = Field(None, ge=0, le=120)
    residents_only: bool = False
    min_income: float | None = Field(None, ge=0)
    min_assets: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _age_range(self) -> Eligibility:
        if self.min_age is not None and self.max_age is not None and self.min_age > self.max_age:
            raise ValueError("min_age must not exceed max_age")
        return self


class Product(BaseModel):
    """One financial product or retention treatment of the catalogue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    name: str = Field(min_length=1)
    category: Category
    risk_level: int = Field(ge=1, le=5, description="R1 (lowest) .. R5 (highest).")
    eligibility: Eligibility = Eligibility()
    retention: bool = False
    business_value: float = Field(gt=0)
    status: Literal["active", "withdrawn"] = "active"
    santander_code: str | None = Field(None, pattern=r"^ind_[a-z_]+_ult1$")

    @property
    def active(self) -> bool:
        return self.status == "active"


class Catalogue(BaseModel):
    """The whole catalogue; ``products`` keeps file order (it is the model's item order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    products: tuple[Product, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        seen: set[str] = set()
        codes: set[str] = set()
        for i, p in enumerate(self.products):
            if p.id in seen:
                raise ValueError(f"products[{i}] ({p.id}).id: duplicate product id")
            seen.add(p.id)
            if p.santander_code:
                if p.santander_code in codes:
                    raise ValueError(
                        f"products[{i}] ({p.id}).santander_code: duplicate {p.santander_code}"
                    )
                codes.add(p.santander_code)
        return self

    def get(self, product_id: str) -> Product:
        for p in self.products:
            if p.id == product_id:
                return p
        raise KeyError(product_id)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.products]

    @property
    def holdable(self) -> list[Product]:
        """Products customers hold (everything but retention treatments), in file order."""
        return [p for p in self.products if not p.retention]

    @property
    def by_santander_code(self) -> dict[str, Product]:
        return {p.santander_code: p for p in self.products if p.santander_code}


def _describe(raw: object, loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into ``products[3] (funds).risk_level``."""
    parts: list[str] = []
    i = 0
    while i < len(loc):
        key = loc[i]
        if key == "products" and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            idx = int(loc[i + 1])
            pid = "?"
            if isinstance(raw, dict):
                items = raw.get("products")
                if isinstance(items, list) and idx < len(items) and isinstance(items[idx], dict):
                    pid = str(items[idx].get("id", "?"))
            parts.append(f"products[{idx}] ({pid})")
            i += 2
            continue
        parts.append(str(key))
        i += 1
    return ".".join(parts) or "<root>"


def load_catalogue(path: Path | str) -> Catalogue:
    """Read and validate a catalogue file; raise :class:`CatalogueError` naming what is wrong."""
    return load_yaml_model(
        path,
        Catalogue,
        CatalogueError,
        "catalogue",
        expected="a mapping with 'version' and 'products'",
        describe=_describe,
    )
