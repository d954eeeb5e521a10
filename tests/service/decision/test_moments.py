"""Customer moments in the request path: maturity trigger, upgrade journey, date rules and
lifecycle-stage levers, on hand-built records with the shipped decisioning config.

The pure decision function is driven with hand-set cross-sell scores (0.1 everywhere
unless told otherwise) and a fake maturity scorer, so every rank below can be worked out
by hand from the catalogue's business values and ``core/decisioning.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from core.catalogue import Catalogue
from core.decisioning import DateRule, DecisioningConfig, load_decisioning
from core.settings import PACKAGE_DIR, Settings
from service.api.schemas import RecommendationRequest
from service.decision.audit_record import audit_record
from service.decision.outcome import Decision
from service.decision.recommend import decide, respond
from service.infra.feature_fetch import FeatureLookup
from tests.support.records import adult
from tests.support.scorers import FEATURE_SET, FixedChurn, FixedScores

NOW = datetime.now(UTC)
TODAY = NOW.date()
SETTINGS = Settings()


@dataclass
class FixedOutflow:
    """A maturity scorer (the ``MaturityScorer`` protocol) giving every contract one risk."""

    probability: float
    calls: list[str] = field(default_factory=list)

    def outflow_probability(
        self, record: Mapping[str, Any], contract: Mapping[str, Any], today: date
    ) -> float:
        self.calls.append(str(contract.get("contract")))
        return self.probability


@pytest.fixture(scope="module")
def shipped(catalogue: Catalogue) -> DecisioningConfig:
    return load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue)


def contract(days: int, amount: float = 20_000.0, product: str = "short_term_deposit") -> dict:
    return {
        "contract": f"k{days}",
        "product": product,
        "opened_on": (TODAY - timedelta(days=365)).isoformat(),
        "maturity_date": (TODAY + timedelta(days=days)).isoformat(),
        "amount": amount,
    }


def run(
    catalogue: Catalogue,
    decisioning: DecisioningConfig,
    record: dict[str, Any],
    *,
    outflow: FixedOutflow | None = None,
    churn: float | None = None,
    overrides: dict[str, float] | None = None,
    channel: str = "app",
    k: int = 3,
) -> Decision:
    return decide(
        FeatureLookup(record, FEATURE_SET, None),
        catalogue=catalogue,
        recommender=FixedScores([p.id for p in catalogue.holdable], overrides or {}),
        churn_model=FixedChurn(churn) if churn is not None else None,
        k=k,
        now=NOW,
        settings=SETTINGS,
        channel=channel,
        decisioning=decisioning,
        maturity_model=outflow,
    )


def ids(decision: Decision) -> list[str]:
    return [o.product.id for o in decision.offers]


# -- maturity -----------------------------------------------------------------------------


def test_deposit_maturing_in_5_days_with_high_risk_is_rank_1(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    # 0.8 x 2.5 (deposit_rate_bonus) x 1 x 1 x boost 12 = 24 against loans at 0.9 x 2.5 =
    # 2.25, and against churn retention of the same product 0.9 x 2.5 x 10 = 22.5.
    record = adult(maturities=[contract(5)])
    decision = run(
        catalogue,
        shipped,
        record,
        outflow=FixedOutflow(0.8),
        churn=0.9,
        overrides={"mortgage": 0.9},
    )
    first = decision.offers[0]
    assert (first.product.id, first.rank, first.trigger, first.contract) == (
        "deposit_rate_bonus",
        1,
        "maturity",
        "k5",
    )
    assert first.priority == pytest.approx(0.8 * 2.5 * 12)
    text = first.reasons[0].text
    due = (TODAY + timedelta(days=5)).isoformat()
    assert f"matures on {due} (in 5 days)" in text
    assert "amount band 10,000-50,000" in text and "80%" in text
    assert "20,000" not in text and "20000" not in text  # the band, never the amount
    assert "maturity boost 12" in first.reasons[-1].text


@pytest.mark.parametrize("days", [10, 8, -1])
def test_not_offered_outside_the_lead_time_or_after_maturity(
    catalogue: Catalogue, shipped: DecisioningConfig, days: int
) -> None:
    outflow = FixedOutflow(0.9)
    decision = run(catalogue, shipped, adult(maturities=[contract(days)]), outflow=outflow)
    assert not any(o.trigger == "maturity" for o in decision.offers)
    assert "deposit_rate_bonus" not in decision.moments.treatments
    assert outflow.calls == []  # a contract outside the window is never scored


@pytest.mark.parametrize("days", [0, 7])
def test_offered_from_lead_days_before_until_the_maturity_day(
    catalogue: Catalogue, shipped: DecisioningConfig, days: int
) -> None:
    decision = run(
        catalogue, shipped, adult(maturities=[contract(days)]), outflow=FixedOutflow(0.9)
    )
    assert decision.offers[0].trigger == "maturity"


def test_low_risk_is_not_offered_and_the_threshold_is_inclusive(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    assert shipped.moments.maturity is not None
    threshold = shipped.moments.maturity.outflow_threshold
    record = adult(maturities=[contract(5)])
    low = run(catalogue, shipped, record, outflow=FixedOutflow(threshold - 0.01))
    at = run(catalogue, shipped, record, outflow=FixedOutflow(threshold))
    assert not any(o.trigger == "maturity" for o in low.offers)
    assert at.offers[0].trigger == "maturity"


def test_no_maturity_model_means_no_maturity_treatment(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    decision = run(catalogue, shipped, adult(maturities=[contract(5)]), outflow=None)
    assert not decision.moments.treatments


def test_the_amount_picks_the_treatment(catalogue: Catalogue, shipped: DecisioningConfig) -> None:
    below = run(
        catalogue, shipped, adult(maturities=[contract(3, 49_999.0)]), outflow=FixedOutflow(0.7)
    )
    above = run(
        catalogue, shipped, adult(maturities=[contract(3, 50_000.0)]), outflow=FixedOutflow(0.7)
    )
    assert below.offers[0].product.id == "deposit_rate_bonus"
    assert above.offers[0].product.id == "advisor_callback"
    assert "amount band 50,000-250,000" in above.offers[0].reasons[0].text


def test_only_configured_contract_products_and_well_formed_contracts_trigger(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    broken = [
        contract(5, product="mortgage"),  # a loan: not in contract_products
        {**contract(4), "amount": -10.0},
        {**contract(3), "amount": "lots"},
        {**contract(2), "maturity_date": "soon"},
        "not a contract",
    ]
    outflow = FixedOutflow(0.9)
    decision = run(catalogue, shipped, adult(maturities=broken), outflow=outflow)
    assert not decision.moments.treatments and outflow.calls == []


def test_maturity_treatment_is_still_filtered_by_eligibility_and_contact_rules(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    minor = run(
        catalogue, shipped, adult(age=17, maturities=[contract(5)]), outflow=FixedOutflow(0.9)
    )
    assert "deposit_rate_bonus" not in ids(minor)
    assert ("deposit_rate_bonus", "eligibility_age") in {
        (e.product_id, e.rule.value) for e in minor.exclusions
    }
    private_on_app = run(
        catalogue,
        shipped,
        adult(tier="private", maturities=[contract(5)]),
        outflow=FixedOutflow(0.9),
    )
    assert private_on_app.offers == []


def test_an_out_of_range_outflow_probability_is_refused(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    with pytest.raises(ValueError, match="not a probability"):
        run(catalogue, shipped, adult(maturities=[contract(5)]), outflow=FixedOutflow(1.5))


# -- upgrade journey, date rules -------------------------------------------------------------


def growing(**values: Any) -> dict[str, Any]:
    base = {
        "tier": "mass",
        "upgrade_candidate": True,
        "aum_growth_m1": 0.25,
        "aum_growth_m2": 0.31,
        "aum_growth_m3": 0.22,
    }
    return adult(**{**base, **values})


def test_upgrade_candidate_gets_the_advisor_meeting_with_its_three_figures(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    decision = run(catalogue, shipped, growing())
    first = decision.offers[0]
    assert (first.product.id, first.trigger) == ("wealth_upgrade_meeting", "upgrade")
    assert first.priority == pytest.approx(1.0 * 3.0 * 5.0)
    assert first.reasons[0].text == (
        "assets grew +22.0%, +31.0%, +25.0% in each of the last three months (oldest first)"
    )


@pytest.mark.parametrize(
    "change", [{"upgrade_candidate": False}, {"upgrade_candidate": "yes"}, {"aum_growth_m2": None}]
)
def test_no_upgrade_without_the_flag_or_a_figure(
    catalogue: Catalogue, shipped: DecisioningConfig, change: dict[str, Any]
) -> None:
    decision = run(catalogue, shipped, growing(**change))
    assert "wealth_upgrade_meeting" not in ids(decision)


def test_birthday_month_triggers_the_configured_treatment(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    last_month = (TODAY.replace(day=1) - timedelta(days=1)).month
    on = run(catalogue, shipped, adult(birth_month=TODAY.month))
    off = run(catalogue, shipped, adult(birth_month=last_month))
    garbage = run(catalogue, shipped, adult(birth_month=True))
    assert (on.offers[0].product.id, on.offers[0].trigger) == (
        "fee_waiver",
        "date_rule:birthday_month",
    )
    assert on.offers[0].reasons[0].text == "a little something for your birthday month"
    assert not off.moments.treatments and not garbage.moments.treatments


def test_a_date_window_wraps_around_the_year() -> None:
    rule = DateRule(
        name="around_birthday",
        anchor="birth_month",
        months_before=1,
        months_after=2,
        product="fee_waiver",
        text="t",
    )
    assert [m for m in range(1, 13) if rule.applies(1, m)] == [1, 2, 3, 12]
    assert [m for m in range(1, 13) if rule.applies(11, m)] == [1, 10, 11, 12]


# -- lifecycle stage ---------------------------------------------------------------------------


def test_churned_customers_get_win_back_offers_only(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    record = growing(lifecycle_stage="churned", birth_month=TODAY.month, maturities=[contract(5)])
    decision = run(
        catalogue,
        shipped,
        record,
        outflow=FixedOutflow(0.9),
        churn=0.9,
        overrides={"mortgage": 0.9},
        k=10,
    )
    assert sorted(ids(decision)) == ["deposit_rate_bonus", "fee_waiver"]
    assert {o.trigger for o in decision.offers} == {"stage:churned"}
    assert decision.offers[0].reasons[0].text == "lifecycle stage churned: win-back offer"


def test_at_risk_gets_retention_first_below_the_churn_threshold(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    # churn 0.1 < 0.5: retention 0.1 x 1.5..2.5 x 10 = 1.5..2.5 beats loans at 0.4 x 2.5 = 1.
    record = adult(lifecycle_stage="at_risk")
    decision = run(catalogue, shipped, record, churn=0.1, overrides={"loans": 0.4})
    assert ids(decision) == ["deposit_rate_bonus", "advisor_callback", "fee_waiver"]
    assert decision.offers[0].reasons[0].text == "retention first: lifecycle stage at_risk"
    mature = run(catalogue, shipped, adult(lifecycle_stage="mature"), churn=0.1)
    assert not any(o.product.retention for o in mature.offers)


def test_new_customers_get_simple_products_with_their_boosts(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    decision = run(
        catalogue, shipped, adult(lifecycle_stage="new"), overrides={"mortgage": 0.9}, k=20
    )
    allowed = {"account", "card", "service", "deposit"}
    assert decision.offers and {o.product.category for o in decision.offers} <= allowed
    assert "mortgage" not in ids(decision)
    lever = {p.product.id: p.lever for p in decision.priorities}
    assert lever["savings_account"] == pytest.approx(1.3)
    assert lever["credit_card"] == pytest.approx(1.0)


def test_stage_and_tier_in_the_response_and_the_audit_record(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    record = adult(lifecycle_stage="growing", tier="mass", birth_month=TODAY.month)
    decision = run(catalogue, shipped, record)
    request = RecommendationRequest(customer_id="C1", channel="app", k=3)
    body = respond(request, "r1", decision, {})
    assert (body["lifecycle_stage"], body["tier"]) == ("growing", "mass")
    assert body["offers"][0]["trigger"] == "date_rule:birthday_month"
    entry = audit_record(body, decision, record, "C1", "p1")
    assert (entry["lifecycle_stage"], entry["tier"]) == ("growing", "mass")
    assert entry["moments"]["treatments"] == [
        {
            "product_id": "fee_waiver",
            "trigger": "date_rule:birthday_month",
            "propensity": 1.0,
            "boost": 3.0,
            "contract": None,
        }
    ]
    assert entry["offers"][0]["trigger"] == "date_rule:birthday_month"
    ranked = entry["arbitration"]["priorities"]
    assert ranked[0]["trigger"] == "date_rule:birthday_month" and ranked[1]["trigger"] is None


def test_unknown_stage_and_tier_change_nothing(
    catalogue: Catalogue, shipped: DecisioningConfig
) -> None:
    odd = run(catalogue, shipped, adult(lifecycle_stage="teenager", tier="gold"), k=20)
    plain = run(catalogue, shipped, adult(lifecycle_stage=None, tier=None), k=20)
    assert (odd.moments.stage, odd.moments.tier) == (None, None)
    assert ids(odd) == ids(plain)
