"""The control group: a stable keyed share, independent of the challenger split; only
service treatments survive it; a bad share is refused naming ``NBO_CONTROL_SHARE``."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from core.pseudonym import Pseudonymiser
from core.settings import Settings
from service.api.schemas import OfferBody, OfferOut
from service.decision.variant import (
    CONTROL,
    Variant,
    assign_variant,
    hold_out,
    in_control,
)
from service.infra.metrics import LABEL_DOMAINS

N = 20_000
IDS = [f"C{i:07d}" for i in range(N)]
PSEUDONYMS = [Pseudonymiser("a-test-key")(c) for c in IDS]


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_control_share_is_the_setting_and_stable(share: float) -> None:
    control = [in_control(p, share) for p in PSEUDONYMS]
    assert abs(sum(control) / N - share) <= 0.01
    assert control == [in_control(p, share) for p in PSEUDONYMS]  # same answer every time
    # Raising the share only adds customers; 0 holds out nobody, 1 everybody.
    assert all(in_control(p, share + 0.1) for p, c in zip(PSEUDONYMS, control, strict=True) if c)
    assert not any(in_control(p, 0.0) for p in PSEUDONYMS[:500])
    assert all(in_control(p, 1.0) for p in PSEUDONYMS[:500])


def test_control_is_keyed_by_the_pseudonym_key() -> None:
    """Another key draws another group (about share^2 overlap, not the same customers)."""
    other = [Pseudonymiser("another-key")(c) for c in IDS[:5000]]
    first = {i for i, p in enumerate(PSEUDONYMS[:5000]) if in_control(p, 0.3)}
    second = {i for i, p in enumerate(other) if in_control(p, 0.3)}
    overlap = len(first & second) / 5000
    assert abs(overlap - 0.09) < 4 * math.sqrt(0.09 * 0.91 / 5000)


@pytest.mark.parametrize(("control_share", "challenger_share"), [(0.1, 0.5), (0.3, 0.2)])
def test_control_is_independent_of_the_challenger_split(
    control_share: float, challenger_share: float
) -> None:
    """Each cell of control x challenger holds the product of its margins, within 4 standard
    errors of a multinomial cell (a correlated split misses by tens of them)."""
    control = [in_control(p, control_share) for p in PSEUDONYMS]
    challenger = [assign_variant(c, challenger_share) is Variant.CHALLENGER for c in IDS]
    p_control, p_challenger = sum(control) / N, sum(challenger) / N
    for want_control in (True, False):
        for want_challenger in (True, False):
            count = sum(
                1
                for c, h in zip(control, challenger, strict=True)
                if c is want_control and h is want_challenger
            )
            expected = (p_control if want_control else 1 - p_control) * (
                p_challenger if want_challenger else 1 - p_challenger
            )
            tolerance = 4 * math.sqrt(expected * (1 - expected) / N)
            assert abs(count / N - expected) <= tolerance, (want_control, want_challenger)


def _offer(product: str, rank: int, trigger: str | None) -> OfferBody:
    offer = OfferOut(
        product_id=product, name=product, rank=rank, score=None, reasons=[], trigger=trigger
    )
    return offer.model_dump(mode="json")


def test_hold_out_keeps_service_treatments_only() -> None:
    offers = [
        _offer("pension_plan", 1, None),
        _offer("deposit_rate_bonus", 2, "churn"),
        _offer("premium_card", 3, "upgrade"),
        _offer("renewal_offer", 4, "maturity"),
        _offer("birthday_gift", 5, "date_rule:birthday"),
    ]
    shown, held = hold_out(offers)
    assert [(o["product_id"], o["rank"]) for o in shown] == [
        ("deposit_rate_bonus", 1),
        ("renewal_offer", 2),
    ]
    assert [(o["product_id"], o["rank"]) for o in held] == [
        ("pension_plan", 1),
        ("premium_card", 3),
        ("birthday_gift", 5),
    ]


def test_every_variant_is_a_metric_label_value() -> None:
    assert set(LABEL_DOMAINS["nbo_recommendations_total"]["variant"]) == {
        *(v.value for v in Variant),
        CONTROL,
    }


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "nan"])
def test_bad_control_share_is_refused_naming_the_variable(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBO_CONTROL_SHARE", bad)
    with pytest.raises(ValidationError, match="NBO_CONTROL_SHARE must be between 0 and 1"):
        Settings()


def test_control_share_defaults_to_nobody() -> None:
    assert Settings().control_share == 0.0
