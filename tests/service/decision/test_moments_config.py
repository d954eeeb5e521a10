"""The ``moments`` section of the decisioning config: a bad entry fails loading, naming the
key or rule and what is wrong; the shipped file is valid."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.catalogue import Catalogue
from core.decisioning import DecisioningError, load_decisioning
from core.settings import PACKAGE_DIR

SHIPPED = yaml.safe_load((PACKAGE_DIR / "decisioning.yaml").read_text(encoding="utf-8"))


def failure(tmp_path: Path, catalogue: Catalogue, change: Any) -> str:
    """Load the shipped config with ``change(config)`` applied; return the error text."""
    config = copy.deepcopy(SHIPPED)
    change(config["moments"])
    path = tmp_path / "decisioning.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(DecisioningError) as raised:
        load_decisioning(path, catalogue)
    return str(raised.value)


def test_the_shipped_moments_are_valid(catalogue: Catalogue) -> None:
    moments = load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue).moments
    assert moments.maturity is not None and moments.maturity.lead_days == 7
    assert set(moments.stages) == {
        "prospect",
        "new",
        "growing",
        "mature",
        "at_risk",
        "dormant",
        "churned",
    }
    assert set(moments.tiers) == {"mass", "affluent", "private"}
    assert [rule.name for rule in moments.date_rules] == ["birthday_month"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m: m["maturity"]["treatments"][0].update(product="deposit_bonus"),
            "moments.maturity.treatments[0].product: unknown product 'deposit_bonus'",
        ),
        (
            lambda m: m["maturity"]["treatments"][1].update(product="mortgage"),
            "moments.maturity.treatments[1].product: 'mortgage' is not a treatment",
        ),
        (
            lambda m: m["maturity"].update(contract_products=["term_deposit"]),
            "moments.maturity.contract_products: unknown product 'term_deposit'",
        ),
        (
            lambda m: m["maturity"].update(lead_days=-1),
            "moments.maturity.lead_days: Input should be greater than or equal to 0",
        ),
        (
            lambda m: m["maturity"].update(amount_bands=[50000, 10000]),
            "moments.maturity: Value error, amount_bands must be positive and strictly ascending",
        ),
        (
            lambda m: m["maturity"]["treatments"][0].update(min_amount=100),
            "moments.maturity: Value error, treatments: min_amount must start at 0",
        ),
        (
            lambda m: m["stages"].update(adult={}),
            "moments.stages.adult: unknown stage (known: prospect, new, growing, mature, "
            "at_risk, dormant, churned)",
        ),
        (
            lambda m: m["stages"]["churned"].update(treatments=["fee_waver"]),
            "moments.stages.churned.treatments: unknown product 'fee_waver'",
        ),
        (
            lambda m: m["stages"]["new"].update(categories=["gadgets"]),
            "moments.stages.new.categories[0]: Input should be",
        ),
        (
            lambda m: m["tiers"].update(gold={"channels": ["app"]}),
            "moments.tiers.gold: unknown tier (known: mass, affluent, private)",
        ),
        (
            lambda m: m["tiers"]["private"].update(channels=["fax"]),
            "moments.tiers.private.channels: unknown channel 'fax'",
        ),
        (
            lambda m: m["tiers"]["mass"].update(channel_daily_cap=-1),
            "moments.tiers.mass.channel_daily_cap: Input should be greater than or equal to 0",
        ),
        (
            lambda m: m["upgrade"].update(product="credit_card"),
            "moments.upgrade.product: 'credit_card' is not a treatment",
        ),
        (
            lambda m: m["date_rules"][0].update(product="fee_waver"),
            "moments.date_rules[0] (birthday_month).product: unknown product 'fee_waver'",
        ),
        (
            lambda m: m["date_rules"][0].update(months_before=-1),
            "moments.date_rules[0] (birthday_month).months_before: Input should be greater",
        ),
        (
            lambda m: m["date_rules"][0].update(months_before=6, months_after=6),
            "moments.date_rules[0] (birthday_month): Value error, window of months_before + "
            "months_after must be under 12 months",
        ),
        (
            lambda m: m["date_rules"][0].update(anchor="wedding_day"),
            "moments.date_rules[0] (birthday_month).anchor: Input should be 'birth_month'",
        ),
        (
            lambda m: m["date_rules"].append(dict(m["date_rules"][0])),
            "moments: Value error, date_rules[1] (birthday_month): duplicate rule name",
        ),
    ],
)
def test_a_bad_entry_fails_naming_the_key_or_rule(
    tmp_path: Path, catalogue: Catalogue, change: Any, expected: str
) -> None:
    message = failure(tmp_path, catalogue, change)
    assert expected in message, message
    assert message.startswith(str(tmp_path / "decisioning.yaml"))
