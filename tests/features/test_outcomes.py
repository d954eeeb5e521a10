"""The outcomes report on planted decisions, events and holdings (tests.support.outcomes_data),
against figures worked out by hand and intervals from an independent reference."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import orjson
import pytest
import redis
from scipy.stats import binomtest

from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser
from core.redis_keys import decisions_key
from core.settings import Settings
from features.outcome_stats import newcombe_difference, wilson
from features.outcomes import OutcomesError, ReportWindow, outcomes_report
from tests.support.auth import TEST_PSEUDONYM_KEY
from tests.support.outcomes_data import (
    DECISIONS,
    EXPECTED,
    SINCE,
    UNTIL,
    plant,
    planted_tables,
    request_id,
)

PSEUDONYMISE = Pseudonymiser(TEST_PSEUDONYM_KEY.get_secret_value())


def _scipy_wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 3), (7, 30), (29, 30), (412, 9000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    got = wilson(k, n)
    assert got is not None
    assert got.estimate == k / n
    assert (got.low, got.high) == pytest.approx(_scipy_wilson(k, n), abs=1e-12)


def test_wilson_rejects_impossible_counts_and_has_none_for_no_trials() -> None:
    assert wilson(0, 0) is None
    with pytest.raises(ValueError, match="successes"):
        wilson(4, 3)


def test_newcombe_reproduces_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80,
    # method 10 gives 0.0524 to 0.3339.
    got = newcombe_difference(56, 70, 48, 80)
    assert got is not None
    assert got.estimate == pytest.approx(0.2)
    assert (round(got.low, 4), round(got.high, 4)) == (0.0524, 0.3339)


def _report(
    client: redis.Redis, settings: Settings, catalogue: Catalogue, **window: Any
) -> dict[str, Any]:
    args: dict[str, Any] = {"since": SINCE, "until": UNTIL} | window
    return outcomes_report(
        client,
        settings,
        planted_tables(catalogue).holdings,
        catalogue,
        PSEUDONYMISE,
        ReportWindow(**args),
    )


def test_counts_rates_and_uplift_of_the_planted_period(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    plant(redis_client, settings, PSEUDONYMISE)
    report = _report(redis_client, settings, catalogue)
    groups = {g["group"]["variant"]: g for g in report["groups"]}
    assert set(groups) == set(EXPECTED)
    for variant, (decisions, customers, shown, accepted, with_offers, took) in EXPECTED.items():
        g = groups[variant]
        assert (
            g["decisions"],
            g["customers"],
            g["offers_shown"],
            g["accepted"],
            g["customers_with_offers"],
            g["customers_took_up"],
        ) == (decisions, customers, shown, accepted, with_offers, took), variant
        assert g["take_up_rate"]["estimate"] == took / with_offers
        low, high = _scipy_wilson(took, with_offers)
        assert (g["take_up_rate"]["low"], g["take_up_rate"]["high"]) == pytest.approx((low, high))
    assert groups["control"]["acceptance_rate"] is None  # nothing shown
    assert groups["champion"]["acceptance_rate"]["estimate"] == 2 / 5

    uplift = {u["group"]["variant"]: u["uplift"] for u in report["uplift"]}
    # Champion 1/3 against control 1/2: Newcombe's bounds from scipy's Wilson intervals.
    a_low, a_high = _scipy_wilson(1, 3)
    b_low, b_high = _scipy_wilson(1, 2)
    diff = 1 / 3 - 1 / 2
    assert uplift["champion"]["estimate"] == pytest.approx(diff)
    assert uplift["champion"]["low"] == pytest.approx(
        diff - math.sqrt((1 / 3 - a_low) ** 2 + (b_high - 1 / 2) ** 2)
    )
    assert uplift["champion"]["high"] == pytest.approx(
        diff + math.sqrt((a_high - 1 / 3) ** 2 + (1 / 2 - b_low) ** 2)
    )
    assert uplift["challenger"]["estimate"] == pytest.approx(1 - 1 / 2)
    assert report["control_basis"] == ["holdout_offers"]
    assert report["take_up_complete"] is True  # holdings until 2026-12-31 >= Nov 15 + 30
    assert all(cust not in str(report) for cust in ("C1", "C2", "C3", "C4"))


def test_grouping_by_variant_and_channel_matches_uplift_within_the_channel(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    plant(redis_client, settings, PSEUDONYMISE)
    report = _report(redis_client, settings, catalogue, by=("variant", "channel"))
    figures = {
        (g["group"]["variant"], g["group"]["channel"]): (
            g["decisions"],
            g["customers_took_up"],
            g["customers_with_offers"],
        )
        for g in report["groups"]
    }
    assert figures == {
        ("champion", "app"): (3, 1, 2),
        ("champion", "email"): (1, 0, 1),
        ("challenger", "app"): (3, 1, 1),
        ("control", "app"): (1, 1, 1),
        ("control", "email"): (1, 0, 1),
    }
    uplift = {(u["group"]["variant"], u["group"]["channel"]): u["uplift"] for u in report["uplift"]}
    assert uplift[("champion", "app")]["estimate"] == pytest.approx(0.5 - 1.0)
    assert uplift[("champion", "email")]["estimate"] == pytest.approx(0.0)


def test_control_without_holdout_offers_counts_any_cross_sell_product(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    # C7 (d8, control) takes nothing; C6 takes credit_card: any cross-sell product counts.
    plant(redis_client, settings, PSEUDONYMISE, holdout=False)
    report = _report(redis_client, settings, catalogue, by=("variant", "product"))
    control = [g for g in report["groups"] if g["group"]["variant"] == "control"]
    active = [p.id for p in catalogue.holdable if p.status == "active"]
    assert {g["group"]["product"] for g in control} == set(active)
    took = {g["group"]["product"]: g["customers_took_up"] for g in control}
    assert took["credit_card"] == 1 and sum(took.values()) == 1
    assert report["control_basis"] == ["cross_sell"]


def test_take_up_counts_only_within_the_window(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    # Every take-up shows in the 2026-11-30 snapshot, 23 to 27 days after its decision:
    # none is within 7 days, and holdings end before Nov 15 + 60 days.
    plant(redis_client, settings, PSEUDONYMISE)
    short = _report(redis_client, settings, catalogue, window_days=7)
    assert [g["customers_took_up"] for g in short["groups"]] == [0, 0, 0]
    assert short["take_up_complete"] is True
    long = _report(redis_client, settings, catalogue, window_days=60)
    assert [g["customers_took_up"] for g in long["groups"]] == [1, 1, 1]
    assert long["take_up_complete"] is False


def test_without_control_uplift_is_not_computable_and_says_so(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    plant(redis_client, settings, PSEUDONYMISE, [d for d in DECISIONS if d[3] != "control"])
    report = _report(redis_client, settings, catalogue)
    assert [u["uplift"] for u in report["uplift"]] == [None, None]
    assert all("no control decisions" in u["note"] for u in report["uplift"])


def test_an_event_citing_no_decision_stops_the_report(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    plant(
        redis_client,
        settings,
        PSEUDONYMISE,
        accepted=[("e9", "zz", "credit_card", "2026-11-05T10:00:00+00:00")],
    )
    with pytest.raises(OutcomesError, match=r"cite no recorded decision.*'e9'"):
        _report(redis_client, settings, catalogue)


def test_an_empty_window_is_refused(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    plant(redis_client, settings, PSEUDONYMISE)
    with pytest.raises(OutcomesError, match="empty window"):
        _report(redis_client, settings, catalogue, since=date(2026, 9, 1), until=date(2026, 9, 30))


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"since": UNTIL, "until": SINCE}, "reversed"),
        ({"since": SINCE, "until": UNTIL, "by": ("variant", "colour")}, "--by colour: unknown"),
        ({"since": SINCE, "until": UNTIL, "window_days": 0}, "at least 1"),
    ],
)
def test_bad_windows_are_named(window: dict[str, Any], message: str) -> None:
    with pytest.raises(OutcomesError, match=message):
        ReportWindow(**window)


def test_weekly_series_and_uplift_when_variant_is_not_a_group_key(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    plant(redis_client, settings, PSEUDONYMISE)
    report = _report(redis_client, settings, catalogue, by=("tier",))
    assert {g["group"]["tier"]: g["decisions"] for g in report["groups"]} == {
        "affluent": 1,
        "mass": 8,
    }
    # Uplift is still per variant, over the variant alone.
    assert {u["group"]["variant"]: u["uplift"]["estimate"] for u in report["uplift"]} == (
        pytest.approx({"champion": 1 / 3 - 1 / 2, "challenger": 1 - 1 / 2})
    )
    # Week of Monday 2026-11-02: champion C1 took credit_card, C2 nothing; week of 11-09:
    # C3 held funds before, C1 never took pension_plan.
    weekly = {
        (w["week"], w["variant"]): (w["customers_took_up"], w["customers_with_offers"])
        for w in report["weekly"]
    }
    assert weekly == {
        ("2026-11-02", "champion"): (1, 2),
        ("2026-11-09", "champion"): (0, 2),
        ("2026-11-02", "challenger"): (1, 1),
        ("2026-11-02", "control"): (1, 2),
    }


def test_a_treatment_shown_to_control_counts_as_shown_not_for_take_up(
    redis_client: redis.Redis, settings: Settings, catalogue: Catalogue
) -> None:
    # C2 (control here) is shown a retention call-back (a non-marketing answer) and accepts
    # it; what they would have been offered is funds, never taken.
    record = {
        "request_id": request_id("t1"),
        "decided_at": "2026-11-09T09:00:00+00:00",
        "customer": PSEUDONYMISE("C2"),
        "channel": "advisor",
        "variant": "control",
        "tier": "mass",
        "offers": [{"product_id": "advisor_callback", "rank": 1}],
        "holdout_offers": ["funds"],
    }
    redis_client.xadd(decisions_key(settings.audit_prefix), {"d": orjson.dumps(record)})
    plant(
        redis_client,
        settings,
        PSEUDONYMISE,
        decisions=[],
        accepted=[("t1-acc", "t1", "advisor_callback", "2026-11-09T10:00:00+00:00")],
    )
    report = _report(redis_client, settings, catalogue)
    (control,) = report["groups"]
    assert (control["offers_shown"], control["accepted"]) == (1, 1)
    assert (control["customers_with_offers"], control["customers_took_up"]) == (1, 0)
