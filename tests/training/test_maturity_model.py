"""The maturity outflow model: point-in-time examples, the exported arithmetic against
scikit-learn, what it learns from the planted bank, and its MLflow registration + gate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.catalogue import Catalogue
from core.scoring.maturity import DEPOSIT_PRODUCTS, INPUT_NAMES, MaturityScorer, contract_inputs
from core.settings import Settings
from core.tables import Tables
from features.synthetic import generate_bank
from registry import promotion
from registry.client import Registry
from registry.holdout import ARTIFACT_FILE, HoldoutValues
from tests.support.registry import empty_store
from training.datasets import DatasetError
from training.maturity import (
    MaturityConfig,
    fit_and_evaluate,
    fit_maturity,
    maturity_examples,
    predict,
    time_split,
    train_maturity,
)

END = date(2025, 12, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(20_000, 12, 7, catalogue, END)


@pytest.fixture(scope="module")
def fitted(bank: Tables, catalogue: Catalogue):  # type: ignore[no-untyped-def]
    return fit_and_evaluate(bank, catalogue, MaturityConfig())


def test_examples_are_point_in_time_and_split_by_time(bank: Tables, catalogue: Catalogue) -> None:
    examples = maturity_examples(bank, catalogue)
    assert examples.inputs.shape == (len(examples.labels), len(INPUT_NAMES))
    assert set(np.unique(examples.labels)) == {0, 1}
    one_hot = [INPUT_NAMES.index(f"product={p}") for p in DEPOSIT_PRODUCTS]
    assert (examples.inputs[:, one_hot].sum(axis=1) == 1).all()  # term deposits only
    # Every label window ends inside the data: no example from the last snapshots.
    last = np.datetime64(bank.holdings["month"].max())
    assert (examples.as_of < last).all()
    split = time_split(examples, 3)
    assert max(split.train_dates) < min(split.holdout_dates)
    assert len(split.holdout_dates) == 3
    assert len(split.train.labels) + len(split.holdout.labels) == len(examples.labels)


def test_exported_model_is_the_calibrated_classifier(bank: Tables, catalogue: Catalogue) -> None:
    examples = maturity_examples(bank, catalogue)
    model, classifier, scaler = fit_maturity(examples, MaturityConfig(folds=3))
    medians = np.array(model.medians)
    imputed = np.where(np.isnan(examples.inputs), medians, examples.inputs)
    expected = classifier.predict_proba(scaler.transform(imputed))[:, 1]
    np.testing.assert_allclose(predict(model, examples), expected, rtol=0, atol=1e-9)
    assert len(model.folds) == 1  # ensemble=False: one regression, one sigmoid
    assert isinstance(model, MaturityScorer)


def test_the_model_learns_the_planted_outflow_and_is_calibrated(fitted) -> None:  # type: ignore[no-untyped-def]
    model, split, metrics = fitted
    assert metrics["rows"] == len(split.holdout.labels) > 150
    assert metrics["roc_auc"] > 0.68
    assert metrics["top_decile_lift"] > 1.8
    proba = predict(model, split.holdout)
    rate = split.holdout.labels.mean()
    assert metrics["brier"] < rate * (1 - rate)  # better than always saying the base rate
    assert abs(proba.mean() - rate) < 0.06
    # Rate hunters (a large share of their assets in the deposit) are riskier.
    share = split.holdout.inputs[:, INPUT_NAMES.index("amount_share")]
    assert proba[share > 0.6].mean() > 1.5 * proba[share < 0.3].mean()


def test_one_contract_scores_the_same_online(fitted) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = fitted
    record = {"balance": 20_000.0, "logins_3m_avg": 0.3, "net_flow_3m": -0.4, "age": 40}
    contract = {
        "contract": "k",
        "product": "short_term_deposit",
        "opened_on": "2025-09-01",
        "maturity_date": "2025-12-01",
        "amount": 15_000.0,
    }
    online = model.outflow_probability(record, contract, date(2025, 11, 25))
    assert online == model.probability_of_inputs(contract_inputs(record, contract))
    calm = {"balance": 200_000.0, "logins_3m_avg": 12.0, "net_flow_3m": 0.05, "age": 40}
    small = {**contract, "amount": 10_000.0}
    assert online > model.outflow_probability(calm, small, date(2025, 11, 25))
    assert 0.0 <= online <= 1.0


def test_train_registers_and_the_gate_compares_roc_auc(
    bank: Tables, catalogue: Catalogue, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=empty_store(tmp_path / "m.db"))
    result = train_maturity(bank, catalogue, settings)
    assert result.model_name == "nbo-maturity" and result.version == 1
    for metric in ("roc_auc", "pr_auc", "brier", "top_decile_lift", "rows"):
        assert metric in result.metrics
    registry = Registry(settings)
    run = registry.run_data(result.run_id)
    assert run.tags["nbo.kind"] == "maturity"
    assert run.metrics["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    artifacts = {a.path for a in registry.client.list_artifacts(result.run_id)}
    assert "calibration.csv" in artifacts
    raw = registry.run_artifact(result.run_id, ARTIFACT_FILE)  # the gate's per-row values
    assert raw is not None
    per_row = HoldoutValues.from_bytes(raw)
    assert per_row.labels is not None and per_row.scores is not None
    assert per_row.rows == result.metrics["rows"]
    assert roc_auc_score(per_row.labels, per_row.scores) == pytest.approx(
        result.metrics["roc_auc"], abs=1e-12
    )
    promotion.promote(registry, "nbo-maturity", 1, reason="first")
    loaded = registry.load("nbo-maturity", "champion")
    assert loaded.scorer.kind == "maturity"
    # Same data, ROC-AUC worse by more than the margin (0.02), no per-row values: refused.
    worse = registry.log_and_register(
        loaded.scorer,
        "nbo-maturity",
        params={"holdout_as_of": run.params["holdout_as_of"]},
        metrics={"roc_auc": result.metrics["roc_auc"] - 0.05},
        tags={"nbo.kind": "maturity", "nbo.data_fingerprint": run.tags["nbo.data_fingerprint"]},
    )
    with pytest.raises(promotion.PromotionRefused, match="roc_auc"):
        promotion.promote(registry, "nbo-maturity", worse.version)


def test_a_bank_without_contracts_is_refused_with_the_reason(
    bank: Tables, catalogue: Catalogue
) -> None:
    empty = Tables(bank.customers, bank.holdings, bank.behaviour)
    with pytest.raises(DatasetError, match="contracts table is empty"):
        maturity_examples(empty, catalogue)


def test_the_trained_model_triggers_the_retention_treatment_in_the_request_path(
    bank: Tables,
    catalogue: Catalogue,
    fitted,  # type: ignore[no-untyped-def]
) -> None:
    """End to end without fakes of the model: features computed from the bank, the trained
    scorer, the shipped decisioning config. The riskiest maturing deposit is the rank-1 offer
    5 days before maturity; 10 days before, or after maturity, it is not; the least risky
    deposit never triggers."""
    from core.decisioning import load_decisioning
    from core.settings import PACKAGE_DIR
    from features.pointintime import compute_features, to_records
    from service.decision.recommend import decide
    from service.infra.feature_fetch import FeatureLookup
    from tests.support.scorers import FEATURE_SET, FixedScores

    model = fitted[0]
    config = load_decisioning(PACKAGE_DIR / "decisioning.yaml", catalogue)
    rule = config.moments.maturity
    frame = compute_features(bank, date(2025, 10, 31), catalogue)
    maturing = []  # (outflow probability 5 days before maturity, record, contract)
    for _, record in to_records(frame):
        if not isinstance(record.get("age"), int) or record["age"] < 25:
            continue
        for deposit in record["maturities"]:
            if deposit["product"] in rule.contract_products:
                due = date.fromisoformat(deposit["maturity_date"])
                p = model.outflow_probability(record, deposit, due - timedelta(days=5))
                maturing.append((p, record, deposit))
    assert len(maturing) > 50
    maturing.sort(key=lambda item: item[0])
    low, high = maturing[0], maturing[-1]
    assert low[0] < rule.outflow_threshold <= high[0], (low[0], high[0])

    def triggered(item: tuple[float, dict, dict], days_before: int) -> list[tuple[int, str]]:
        _, record, deposit = item
        today = date.fromisoformat(deposit["maturity_date"]) - timedelta(days=days_before)
        decision = decide(
            FeatureLookup(record, FEATURE_SET, None),
            catalogue=catalogue,
            recommender=FixedScores([p.id for p in catalogue.holdable]),
            churn_model=None,
            k=3,
            now=datetime.combine(today, datetime.min.time(), UTC),
            settings=Settings(),
            channel="branch",  # every tier is served in branches
            decisioning=config,
            maturity_model=model,
        )
        return [(o.rank, o.product.id) for o in decision.offers if o.trigger == "maturity"]

    ranked = triggered(high, 5)
    assert len(ranked) == 1 and ranked[0][0] == 1, ranked
    assert triggered(high, 10) == []
    assert triggered(high, -1) == []  # the day after maturity
    assert triggered(low, 5) == []
