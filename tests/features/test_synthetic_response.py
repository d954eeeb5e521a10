"""The hidden response behaviour of ``nbo simulate``: channel, fatigue, fit, determinism."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue
from features.synthetic import generate_bank
from features.synthetic_population import INVESTOR
from features.synthetic_response import HiddenBehaviour, ResponseRules, bank_population

PRODUCTS = ["funds", "loans", "withdrawn"]
# Archetype 0 adds funds often and loans rarely; archetype 1 the reverse; nobody adds
# "withdrawn".
ADD_RATES = np.array([[0.04, 0.002, 0.0], [0.002, 0.04, 0.0]])


def behaviour(seed: int = 3, **rules: float) -> HiddenBehaviour:
    customers = pd.DataFrame(
        {"customer_id": ["A", "B", "C"], "preferred_channel": ["push", "app", None]}
    )
    return HiddenBehaviour(
        customers, np.array([0, 1, 0]), ADD_RATES, PRODUCTS, seed, ResponseRules(**rules)
    )


def test_preferred_channel_fatigue_and_fit_set_the_probability() -> None:
    b = behaviour(responsiveness_sigma=0.0)  # responsiveness 1 for everyone
    r = b.rules
    mean = ADD_RATES[:, :2].mean()
    fit = min(r.fit_cap, 0.04 / mean)
    assert b.accept_probability("A", "funds", "push", 0) == pytest.approx(
        r.base_rate * r.preferred_factor * fit
    )
    assert b.accept_probability("A", "funds", "sms", 0) == pytest.approx(
        r.base_rate * r.other_factor * fit
    )
    assert b.accept_probability("A", "funds", "push", 2) == pytest.approx(
        r.base_rate * r.preferred_factor * fit * r.fatigue**2
    )
    # Product fit follows the archetype's add rates: A (archetype 0) likes funds, B loans.
    assert b.accept_probability("A", "loans", "push", 0) < b.accept_probability(
        "A", "funds", "push", 0
    )
    assert b.accept_probability("B", "loans", "app", 0) > b.accept_probability(
        "B", "funds", "app", 0
    )
    # No preferred channel in the master data -> app.
    assert b.accept_probability("C", "funds", "app", 0) > b.accept_probability(
        "C", "funds", "push", 0
    )
    assert b.accept_probability("A", "retention_call", "push", 0) == 0.0
    with pytest.raises(ValueError, match="'Z' is not in this bank"):
        b.accept_probability("Z", "funds", "push", 0)


def test_answers_show_the_channel_and_fatigue_effects_over_many_draws() -> None:
    b = behaviour(base_rate=0.2, responsiveness_sigma=0.0)

    def rate(channel: str, shown_before: int) -> float:
        answers = [b.answer("A", "funds", channel, shown_before, day) for day in range(2000)]
        return answers.count("accepted") / len(answers)

    fresh, tired, elsewhere = rate("push", 0), rate("push", 3), rate("email", 0)
    assert fresh > 0.5
    assert tired < fresh / 4
    assert elsewhere < fresh / 3


def test_same_seed_same_answers_in_any_order_other_seed_other_answers() -> None:
    calls = [("A", "funds", "push", n, day) for day in range(200) for n in range(3)]
    first = [behaviour(3).answer(*c) for c in calls]
    again = behaviour(3)
    backwards = [again.answer(*c) for c in reversed(calls)][::-1]
    assert first == backwards
    assert first != [behaviour(4).answer(*c) for c in calls]
    visits = [behaviour(3).visit_channel("B", day) for day in range(300)]
    assert visits == [behaviour(3).visit_channel("B", day) for day in range(300)]
    assert 0.6 < visits.count("app") / len(visits) < 0.8  # visit_preferred 0.7


def test_organic_adds_never_re_add_what_is_held() -> None:
    b = behaviour(3)
    held = np.array([1, 0, 0], dtype=np.int8)
    adds = np.array([b.organic_adds("A", held, days) for days in range(1, 400)])
    assert not adds[:, 0].any()  # held
    assert not adds[:, 2].any()  # nobody adds it
    assert adds[:, 1].any()


def test_for_bank_draws_the_population_of_the_generated_bank(catalogue: Catalogue) -> None:
    end = date(2026, 10, 31)
    tables = generate_bank(300, 6, 11, catalogue, end)
    population = bank_population(300, 6, 11, end)
    births = tables.customers["birth_date"].to_numpy("datetime64[D]")
    assert (births == population.birth).all()
    b = HiddenBehaviour.for_bank(tables.customers, 6, 11, catalogue, end)
    funds = b.fit[:, b._products["funds"]]
    investors = population.archetype == INVESTOR
    assert funds[investors].min() > funds[~investors].max()  # investors add funds most
    assert list(b.preferred) == [
        c if c is not None else "app" for c in tables.customers["preferred_channel"]
    ]
