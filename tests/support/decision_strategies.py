"""Hypothesis strategies of whole decision situations - a catalogue, a customer record,
its moments config, model scores and a serving mode - and the fixed settings they are
decided under: shared by the suitability property test and the tests of the decision's
caches (``tests/service/decision``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

from hypothesis import strategies as st

from core.catalogue import Catalogue, Category, Eligibility, Product
from core.decisioning import (
    STAGES,
    TIERS,
    MomentsConfig,
    RetentionConfig,
)
from core.settings import Settings
from features.online_store import FeatureSetInfo
from tests.support.decision_cases import ChosenChurn, eligibility, garbage, scorers

TODAY = date(2026, 11, 15)
NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
SETTINGS = Settings(
    risk_assessment_validity_days=730, churn_medium_threshold=0.2, churn_high_threshold=0.5
)
RETENTION = RetentionConfig(churn_threshold=0.5, boost=10)
CATEGORIES: tuple[str, ...] = get_args(Category)
CHANNELS = ("app", "push", "sms", "email", "advisor", "branch")
FEATURE_SET = FeatureSetInfo(
    "v1", TODAY - timedelta(days=20), datetime(2026, 11, 5, tzinfo=UTC), 1, [], "t"
)


# -- fakes (pure logic only) --------------------------------------------------------------


@dataclass
class ChosenOutflow:
    """A maturity scorer giving every contract the risk hypothesis chose."""

    probability: float

    def outflow_probability(self, record: Any, contract: Any, today: date) -> float:
        return self.probability


# -- strategies ---------------------------------------------------------------------------


@st.composite
def catalogues(draw: st.DrawFn) -> Catalogue:
    count = draw(st.integers(1, 12))
    products = []
    for i in range(count):
        # Treatments (retention) lean to what real ones are - R1, category retention - so
        # that triggered ones often pass the filters; any of them may still be anything.
        treatment = draw(st.booleans())
        lean = draw(st.booleans()) and treatment
        products.append(
            Product(
                id=f"p{i}",
                name=f"product {i}",
                category=draw(st.sampled_from(["retention", "service"] if lean else CATEGORIES)),
                risk_level=1 if lean else draw(st.integers(1, 5)),
                eligibility=draw(st.just(Eligibility()) | eligibility()),
                retention=treatment,
                business_value=draw(st.floats(0.1, 10)),
                status=draw(st.sampled_from(["active", "active", "withdrawn"])),
            )
        )
    return Catalogue(version="t", products=tuple(products))


def facts(*, well_formed: bool) -> dict[str, st.SearchStrategy[Any]]:
    """The suitability facts of a record: anything at all, or plausible, valid values."""
    if well_formed:
        assessed = st.dates(TODAY - timedelta(days=700), TODAY).map(date.isoformat)
        levels = {"age": st.integers(16, 90), "risk_level": st.integers(1, 5)}
        amounts = {"income": st.floats(0, 3e5), "balance": st.floats(0, 1e6)}
        return {**levels, **amounts, "risk_assessed_on": assessed, "resident": st.booleans()}
    assessed = st.none() | st.dates(TODAY - timedelta(days=1500), TODAY + timedelta(60))
    return {
        "age": st.none() | st.integers(0, 100) | st.floats(0, 100) | garbage(),
        "risk_level": st.none() | st.integers(0, 6) | st.sampled_from([3.0, 2.5]) | garbage(),
        "risk_assessed_on": assessed.map(lambda d: d.isoformat() if d else None)
        | st.just("not a date"),
        "resident": st.none() | st.booleans() | garbage(),
        "income": st.none() | st.floats(-1e6, 1e6) | garbage(),
        "balance": st.none() | st.floats(-1e6, 1e7) | garbage(),
    }


@st.composite
def records(
    draw: st.DrawFn, product_ids: list[str], well_formed: bool = False, contracted: Any = ()
) -> dict[str, Any]:
    """A feature record; ``well_formed``: valid facts, and contracts of ``contracted``
    products with valid dates and amounts."""
    maturities = (
        st.lists(contracts(list(contracted), well_formed=True), min_size=1, max_size=3)
        if well_formed and contracted
        else st.lists(contracts(product_ids), max_size=3) | garbage()
    )
    return {
        **{name: draw(values) for name, values in facts(well_formed=well_formed).items()},
        "held": draw(st.lists(st.sampled_from([*product_ids, "not_in_catalogue"]), unique=True)),
        # Moments (the fields the moments-features and moments-maturity jobs write):
        "tier": draw(st.sampled_from([*TIERS, None, "gold"]) | garbage()),
        "lifecycle_stage": draw(st.sampled_from([*STAGES, None, "teenager"]) | garbage()),
        "upgrade_candidate": draw(st.just(True) | st.booleans() | st.none() | garbage()),
        **{
            f"aum_growth_m{n}": draw(st.floats(-1, 3) | st.none() | st.just(math.nan) | garbage())
            for n in (1, 2, 3)
        },
        "birth_month": draw(
            st.just(TODAY.month) | st.none() | st.integers(0, 13) | st.just(6.0) | garbage()
        ),
        "maturities": draw(maturities),
    }


@st.composite
def contracts(draw: st.DrawFn, product_ids: list[str], well_formed: bool = False) -> Any:
    early, late = (1, 8) if well_formed else (5, 15)  # well formed: mostly within lead days
    due = draw(st.dates(TODAY - timedelta(days=early), TODAY + timedelta(days=late)))
    valid = well_formed or draw(st.booleans())
    amount = st.floats(0, 2e5) if well_formed else st.floats(-1e3, 2e5) | st.just(math.nan)
    return {
        "contract": f"ck{draw(st.integers(0, 9))}",
        "product": draw(st.sampled_from(product_ids if well_formed else [*product_ids, "x"])),
        "opened_on": "2024-01-01",
        "maturity_date": due.isoformat() if valid else draw(garbage()),
        "amount": draw(amount if well_formed else amount | st.none() | garbage()),
    }


@st.composite
def moments_configs(draw: st.DrawFn, catalogue: Catalogue) -> MomentsConfig:
    """A moments config naming the catalogue's treatments (retention products) only."""
    treatments = [p.id for p in catalogue.products if p.retention]
    ids = [p.id for p in catalogue.products]
    pick = st.sampled_from(treatments) if treatments else st.nothing()
    category = st.sampled_from(CATEGORIES)
    config: dict[str, Any] = {
        "stages": {
            stage: {
                "cross_sell": draw(st.booleans()),
                "categories": draw(st.none() | st.lists(st.sampled_from(CATEGORIES), unique=True)),
                "boosts": {"categories": draw(st.dictionaries(category, st.floats(0.1, 5)))},
                "retention_first": draw(st.booleans()),
                "treatments": draw(st.lists(pick, unique=True, max_size=2)) if treatments else [],
                "treatments_only": draw(st.booleans()),
                "boost": draw(st.floats(0.1, 10)),
            }
            for stage in draw(st.lists(st.sampled_from(STAGES), unique=True))
        },
        "tiers": {
            tier: {
                "channels": draw(st.lists(st.sampled_from(CHANNELS), min_size=1, unique=True)),
                "channel_daily_cap": draw(st.none() | st.integers(0, 12)),
                "max_impressions": draw(st.none() | st.integers(1, 4)),
            }
            for tier in draw(st.lists(st.sampled_from(TIERS), unique=True))
        },
    }
    if treatments:
        floors = sorted(draw(st.sets(st.floats(1, 1e5), max_size=2)))
        config["maturity"] = {
            "lead_days": draw(st.integers(0, 10)),
            "outflow_threshold": draw(st.floats(0, 1)),
            "boost": draw(st.floats(0.1, 20)),
            "contract_products": draw(st.lists(st.sampled_from(ids), min_size=1, unique=True)),
            "amount_bands": [1e4, 5e4],
            "treatments": [
                {"product": draw(pick), "min_amount": floor} for floor in [0.0, *floors]
            ],
        }
        config["upgrade"] = {"product": draw(pick), "boost": draw(st.floats(0.1, 10))}
        window = {"months_before": draw(st.integers(0, 5)), "months_after": draw(st.integers(0, 5))}
        rule = {"name": "birthday_month", "anchor": "birth_month", "product": draw(pick)}
        config["date_rules"] = [{**rule, **window, "text": "birthday"}]
    return MomentsConfig.model_validate(config)


MODES = ["personal", "no_model", "unknown_customer", "no_feature_set", "store_unavailable"]


@st.composite
def situations(draw: st.DrawFn, moments_first: bool = False) -> dict[str, Any]:
    """A whole request; ``moments_first``: a well-formed record, a record always read and a
    maturity model always loaded, so that most examples exercise the treatment triggers."""
    catalogue = draw(catalogues())
    outflow = st.builds(ChosenOutflow, st.floats(0, 1))
    moments = draw(moments_configs(catalogue))
    contracted = moments.maturity.contract_products if moments.maturity else ()
    return {
        "catalogue": catalogue,
        "record": draw(records(catalogue.ids, moments_first, contracted)),
        "scorer": draw(scorers(catalogue)),
        "churn": draw(st.none() | st.builds(ChosenChurn, st.floats(0, 1))),
        "outflow": draw(outflow if moments_first else st.none() | outflow),
        "moments": moments,
        "mode": draw(st.sampled_from(MODES[:2] if moments_first else MODES)),
        "k": draw(st.integers(1, 20)),
        "channel": draw(st.sampled_from(["advisor", "app"])),  # no channel rule applies
    }


# -- oracle -------------------------------------------------------------------------------
