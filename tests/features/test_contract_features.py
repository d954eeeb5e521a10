"""The ``maturities`` record field: exact entries, point in time, through Redis and back."""

from __future__ import annotations

from datetime import date, timedelta

import orjson
import pandas as pd
import pytest
import redis

from core.catalogue import Catalogue
from core.settings import Settings
from core.tables import CONTRACT_SCHEMA, Tables
from features.contract_features import contract_key
from features.materialize import materialize
from features.online_store import OnlineStore
from features.pointintime import compute_features, to_records
from features.synthetic import generate_bank
from tests.support.tables import customer, holding, make_tables

AS_OF = date(2025, 6, 30)


def _day(days: int) -> date:
    return AS_OF + timedelta(days=days)


def _contract(contract_id: str, opened: date, maturity: date | None, **fields: object) -> dict:
    row: dict[str, object] = dict.fromkeys(CONTRACT_SCHEMA.names)
    row.update(
        contract_id=contract_id,
        customer_id="C1",
        product="short_term_deposit",
        opened_on=opened,
        maturity_date=maturity,
        amount=1_000.0,
    )
    row.update(fields)
    return row


def _hand_built(catalogue: Catalogue) -> Tables:
    ids = [p.id for p in catalogue.holdable]
    tables = make_tables(
        ids,
        [customer("C1"), customer("C2")],
        [holding("C1", AS_OF, "short_term_deposit"), holding("C2", AS_OF, "current_account")],
    )
    jan = date(2025, 1, 10)
    rows = [
        _contract("K-in", jan, _day(10), amount=2_500.5),
        _contract("K-edge", jan, _day(45), product="long_term_deposit"),
        _contract("K-after-horizon", jan, _day(46)),
        _contract("K-matures-today", jan, AS_OF),
        _contract("K-closed-early", jan, _day(5), closed_on=_day(-1), outcome="left"),
        _contract("K-leaves-later", jan, _day(20), closed_on=_day(20), outcome="left"),
        _contract("K-opened-later", _day(1), _day(30)),
        _contract("K-loan", jan, None, product="loans"),
        _contract("K-other-bank-customer", jan, _day(10), customer_id="C9"),
    ]
    frame = pd.DataFrame(rows, columns=CONTRACT_SCHEMA.names)
    for column in ("opened_on", "maturity_date", "closed_on"):
        frame[column] = pd.to_datetime(frame[column])
    tables.contracts = frame
    return tables


def test_entries_by_hand(catalogue: Catalogue) -> None:
    features = compute_features(_hand_built(catalogue), AS_OF, catalogue)
    records = dict(to_records(features))
    assert records["C2"]["maturities"] == []
    expected = [
        {
            "contract": contract_key("K-in"),
            "product": "short_term_deposit",
            "opened_on": "2025-01-10",
            "maturity_date": "2025-07-10",
            "amount": 2_500.5,
        },
        {
            "contract": contract_key("K-leaves-later"),
            "product": "short_term_deposit",
            "opened_on": "2025-01-10",
            "maturity_date": "2025-07-20",
            "amount": 1_000.0,
        },
        {
            "contract": contract_key("K-edge"),
            "product": "long_term_deposit",
            "opened_on": "2025-01-10",
            "maturity_date": "2025-08-14",
            "amount": 1_000.0,
        },
    ]
    assert records["C1"]["maturities"] == expected
    raw = orjson.dumps(records["C1"])
    assert b"K-" not in raw  # only pseudonymous keys, never a contract id
    assert len({e["contract"] for e in expected}) == 3


def test_a_bank_without_contracts_has_empty_lists(catalogue: Catalogue) -> None:
    tables = _hand_built(catalogue)
    tables.contracts = tables.contracts.iloc[:0]
    features = compute_features(tables, AS_OF, catalogue)
    assert features["maturities"].map(len).eq(0).all()


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(3_000, 9, 11, catalogue, date(2025, 9, 30))


def _truncated(tables: Tables, as_of: pd.Timestamp) -> Tables:
    """Independent oracle: what the bank had written down by the end of ``as_of``."""
    contracts = tables.contracts[tables.contracts["opened_on"] <= as_of].copy()
    later = contracts["closed_on"] > as_of
    contracts.loc[later, "closed_on"] = pd.NaT
    contracts.loc[later, "outcome"] = None
    return Tables(
        customers=tables.customers,
        holdings=tables.holdings[tables.holdings["month"] <= as_of],
        behaviour=tables.behaviour[tables.behaviour["month"] <= as_of],
        contracts=contracts,
    )


@pytest.mark.parametrize("back", [1, 3])
def test_truncating_the_future_changes_no_maturity(
    bank: Tables, catalogue: Catalogue, back: int
) -> None:
    months = sorted(bank.holdings["month"].unique())
    as_of = pd.Timestamp(months[-1 - back]) + pd.Timedelta(days=back)
    full = compute_features(bank, as_of.date(), catalogue)
    cut = compute_features(_truncated(bank, as_of), as_of.date(), catalogue)
    assert full["maturities"].map(len).sum() > 15
    pd.testing.assert_frame_equal(full, cut)


def test_round_trip_through_the_online_store(
    bank: Tables, catalogue: Catalogue, redis_client: redis.Redis, settings: Settings
) -> None:
    as_of = bank.holdings["month"].max().date()
    store = OnlineStore.for_settings(redis_client, settings)
    info = materialize(bank, as_of, catalogue, store)
    expected = dict(to_records(compute_features(bank, as_of, catalogue)))
    with_contracts = [c for c, r in expected.items() if r["maturities"]]
    assert len(with_contracts) > 10
    assert "maturities" in info.feature_names
    for customer_id in with_contracts[:20]:
        assert store.read(info.version, customer_id) == expected[customer_id]
