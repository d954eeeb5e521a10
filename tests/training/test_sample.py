"""Training on a sample: stratified by tier x churned, deterministic per seed, read one
partition at a time, and documented in the MLflow run."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cli.main import app
from core.catalogue import Catalogue
from core.tables import Tables, contract_products, read_tables, restrict, write_tables
from features.synthetic import generate_bank
from training.sample import read_sample, strata, stratified_sample

END = date(2025, 12, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(customers=2000, months=8, seed=3, catalogue=catalogue, end_month=END)


def test_the_same_seed_gives_the_same_sample_and_another_seed_another(bank: Tables) -> None:
    first = stratified_sample(bank.customers, 500, seed=1)
    again = stratified_sample(bank.customers.sample(frac=1.0, random_state=4), 500, seed=1)
    other = stratified_sample(bank.customers, 500, seed=2)
    assert first.ids == again.ids  # row order does not matter
    assert first.size == other.size == 500
    assert first.ids != other.ids
    assert len(first.ids & other.ids) < 400  # ~125 shared by chance at 25%


def test_every_stratum_keeps_its_share(bank: Tables) -> None:
    sample = stratified_sample(bank.customers, 500, seed=1)
    groups = strata(bank.customers)
    counts = groups.value_counts()
    assert {k: bank_count for k, (bank_count, _) in sample.strata.items()} == counts.to_dict()
    assert any(k.endswith("|churned") for k in sample.strata)
    assert len(sample.strata) >= 4  # several tiers x churned / stayed
    drawn = groups[bank.customers["customer_id"].isin(sample.ids).to_numpy()].value_counts()
    for name, (in_bank, taken) in sample.strata.items():
        assert int(drawn.get(name, 0)) == taken
        assert abs(taken - in_bank * 500 / len(bank.customers)) < 1  # largest remainder
    assert sum(taken for _, taken in sample.strata.values()) == 500


def test_a_sample_larger_than_the_bank_is_everyone(bank: Tables) -> None:
    sample = stratified_sample(bank.customers, 10**6, seed=1)
    assert sample.ids == set(bank.customers["customer_id"]) and sample.population == 2000
    with pytest.raises(ValueError, match="at least 1 customer"):
        stratified_sample(bank.customers, 0, seed=1)


def test_the_sample_is_read_one_partition_at_a_time_with_all_its_rows(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    ids = [p.id for p in catalogue.holdable]
    write_tables(bank, tmp_path, ids, contract_products(catalogue), partitions=3)
    steps: list[str] = []
    tables, sample = read_sample(tmp_path, 400, seed=5, progress=steps.append)
    assert sample.ids == stratified_sample(bank.customers, 400, seed=5).ids
    assert len(steps) == 3 and steps[-1].endswith("partition 3/3")
    expected = restrict(read_tables(tmp_path), sample.ids)
    for name in ("customers", "holdings", "behaviour", "contracts"):
        got, want = getattr(tables, name), getattr(expected, name)
        assert set(got["customer_id"]) <= sample.ids
        key = [c for c in ("customer_id", "month", "contract_id") if c in got.columns]
        pd.testing.assert_frame_equal(
            got.sort_values(key).reset_index(drop=True),
            want.sort_values(key).reset_index(drop=True),
        )


def test_nbo_train_logs_the_sample_in_the_run(
    bank: Tables, catalogue: Catalogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("NBO_HOME", str(home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("NBO_TRAINING_SAMPLE_CUSTOMERS", "1200")  # the CLI option wins
    ids = [p.id for p in catalogue.holdable]
    write_tables(bank, home / "data", ids, contract_products(catalogue), partitions=2)
    args = ["train", "churn", "--sample", "900", "--sample-seed", "11", "--no-register"]
    out = CliRunner().invoke(app, [*args, "--param", "max_train_snapshots=2"])
    assert out.exit_code == 0, out.output
    assert "sample     900 of 2,000 customers" in " ".join(out.output.split("\n"))
    run_id = next(line.split()[1] for line in out.output.splitlines() if line.startswith("run "))
    params = MlflowClient(uri).get_run(run_id).data.params
    assert params["sample.customers"] == "900" and params["sample.seed"] == "11"
    assert params["sample.population"] == "2000"
    assert params["sample.stratified_by"] == "tier x churned"
    logged = json.loads(params["sample.strata"])
    expected = stratified_sample(bank.customers, 900, seed=11).strata
    assert {k: (v["bank"], v["drawn"]) for k, v in logged.items()} == expected
