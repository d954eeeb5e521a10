"""Training jobs end to end on a small synthetic bank, with a real MLflow registry.

One bank (3,000 customers x 8 months) and one MLflow store serve the whole module; each
model is trained once and the tests inspect the result.
"""

from __future__ import annotations

import json
import pickle
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from core.catalogue import Catalogue
from core.moments import load_moments
from core.scoring.base import ChurnScorer, RecommenderScorer
from core.scoring.boosted import REASON_TEXTS, BoostedRecommender
from core.scoring.churn import TabularDesign
from core.scoring.legacy import TwoStageRecommender
from core.settings import Settings
from core.tables import Tables
from features.pointintime import compute_features, to_records
from features.synthetic import generate_bank
from registry.client import Registry
from registry.compare import compare
from registry.holdout import ARTIFACT_FILE, HoldoutValues
from tests.support.registry import empty_store
from tests.support.tables import customer, holding, make_tables
from training import TrainResult
from training.churn import ChurnConfig, train_churn
from training.datasets import DatasetError, churn_split, recommender_split
from training.labels import added_products, churned_within, horizon_end
from training.recommender import RecommenderConfig, train_recommender
from training.recommender_data import frame_inputs

END_MONTH = date(2025, 12, 31)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(
        customers=3000, months=8, seed=11, catalogue=catalogue, end_month=END_MONTH
    )


@pytest.fixture(scope="module")
def recommender_bank(catalogue: Catalogue) -> Tables:
    """Large enough that a few hundred customers add a product in the holdout month (the
    model learns from adding customers only)."""
    return generate_bank(customers=8000, months=8, seed=5, catalogue=catalogue, end_month=END_MONTH)


@pytest.fixture(scope="module")
def train_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("training")
    return Settings(home=root / "home", mlflow_tracking_uri=empty_store(root / "mlflow.db"))


@pytest.fixture(scope="module")
def recommender_run(
    recommender_bank: Tables, catalogue: Catalogue, train_settings: Settings
) -> TrainResult:
    config = RecommenderConfig(max_iter=40, max_leaf_nodes=7, min_samples_leaf=20)
    return train_recommender(recommender_bank, catalogue, train_settings, config=config)


@pytest.fixture(scope="module")
def churn_run(bank: Tables, catalogue: Catalogue, train_settings: Settings) -> TrainResult:
    return train_churn(bank, catalogue, train_settings)


@pytest.fixture(scope="module")
def recommender(recommender_run: TrainResult, train_settings: Settings) -> BoostedRecommender:
    registry = Registry(train_settings)
    registry.promote(recommender_run.model_name, recommender_run.version)
    scorer = registry.load(recommender_run.model_name, "champion").scorer
    assert isinstance(scorer, BoostedRecommender)
    return scorer


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (fails on anything that is not a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# -- labels and splits ------------------------------------------------------------------------


def test_added_products_are_held_next_snapshot_and_not_now() -> None:
    t0, t1 = pd.Timestamp("2025-01-31"), pd.Timestamp("2025-02-28")
    tables = make_tables(
        ["a", "b", "c"],
        [customer("1"), customer("2"), customer("3"), customer("4")],
        [
            holding("1", t0.date(), "a"),
            holding("1", t1.date(), "a", "b"),  # added b
            holding("2", t0.date(), "a", "c"),
            holding("2", t1.date(), "c"),  # dropped a: no addition
            holding("3", t0.date(), "a"),  # no row at t1: no label
            holding("4", t1.date(), "c"),  # no row at t0: held nothing, added c
        ],
    )
    added = added_products(tables, t0, t1, ["a", "b", "c"])
    assert sorted(added.index) == ["1", "2", "4"]
    assert added.loc[["1", "2", "4"]].to_numpy().tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_churn_label_window_is_after_as_of_up_to_horizon() -> None:
    as_of = pd.Timestamp("2025-01-31")
    assert horizon_end(as_of, 3) == pd.Timestamp("2025-04-30")
    left = {"on": "2025-01-31", "in": "2025-04-30", "late": "2025-05-01", "early": "2025-02-01"}
    master = pd.DataFrame(
        {
            "customer_id": [*left, "stays"],
            "left_on": pd.to_datetime(pd.Series([*left.values(), None])),
        }
    )
    labels = churned_within(master, as_of, 3)
    assert labels.to_dict() == {"on": 0, "in": 1, "late": 0, "early": 1, "stays": 0}


def _contracts_known_at(contracts: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Contracts opened by ``as_of``, with later closings and outcomes not yet written."""
    known = contracts[contracts["opened_on"] <= as_of].copy()
    later = known["closed_on"] > as_of
    known.loc[later, "closed_on"] = pd.NaT
    known.loc[later, "outcome"] = None
    return known


def test_split_is_by_time_and_features_see_nothing_after_as_of(
    bank: Tables, catalogue: Catalogue
) -> None:
    split = recommender_split(bank, catalogue)
    assert split.train_dates == sorted(split.train_dates)
    assert split.train_dates[-1] < split.holdout.as_of
    as_of = split.train[-1].as_of
    # The same features from tables cut at as_of: later rows cannot have leaked in.
    cut = Tables(
        customers=bank.customers.assign(
            left_on=bank.customers["left_on"].where(bank.customers["left_on"] <= as_of)
        ),
        holdings=bank.holdings[bank.holdings["month"] <= as_of],
        behaviour=bank.behaviour[bank.behaviour["month"] <= as_of],
        contracts=_contracts_known_at(bank.contracts, as_of),
    )
    expected = compute_features(cut, as_of.date(), catalogue).loc[split.train[-1].features.index]
    pd.testing.assert_frame_equal(split.train[-1].features, expected)

    churn = churn_split(bank, catalogue, horizon_months=3)
    last_data = bank.holdings["month"].max()
    assert horizon_end(churn.holdout.as_of, 3) <= last_data
    assert all(d < churn.holdout.as_of for d in churn.train_dates)


# -- recommender ------------------------------------------------------------------------------


def test_recommender_registers_a_version_with_metrics(
    recommender_run: TrainResult, train_settings: Settings
) -> None:
    client = MlflowClient(train_settings.tracking_uri)
    version = client.get_model_version(train_settings.recommender_model_name, "1")
    assert version.status == "READY"
    assert version.run_id == recommender_run.run_id
    run = client.get_run(recommender_run.run_id)
    assert run.info.status == "FINISHED"
    for key in ("map_at_7", "ndcg_at_7", "recall_at_7", "popularity_map_at_7"):
        assert 0.0 <= run.data.metrics[f"quality/{key}"] <= 1.0  # grouped in the UI
    assert len(run.data.tags["nbo.data_fingerprint"]) == 16
    names = Path(client.download_artifacts(recommender_run.run_id, "feature_names.json"))
    assert "held__credit_card" in json.loads(names.read_text())
    assert "nbo.feature_names" not in run.data.tags  # an artifact, not a 5,000-character tag
    assert run.data.params["holdout_as_of"] > run.data.params["train_as_of"].split(",")[-1]
    logged = {a.path for a in client.list_artifacts(recommender_run.run_id)}
    assert {
        "feature_importances.csv",
        "feature_importances.png",
        "per_product_precision.csv",
        "per_product_precision.png",
        "feature_names.json",
    } <= logged
    plot = Path(client.download_artifacts(recommender_run.run_id, "feature_importances.png"))
    assert _png_size(plot) == (800, 695)  # 25 bars: the plot keeps the top 25 inputs
    table = pd.read_csv(
        client.download_artifacts(recommender_run.run_id, "per_product_precision.csv")
    )
    assert set(table.columns) >= {"product_id", "recommended", "hits", "precision", "recall"}
    # Each scored customer's AP@7, for the promotion gate's bootstrap: their mean is MAP@7.
    per_row = HoldoutValues.from_bytes(
        Path(client.download_artifacts(recommender_run.run_id, ARTIFACT_FILE)).read_bytes()
    )
    assert per_row.metric == "map_at_7" and per_row.values is not None
    assert per_row.rows == run.data.metrics["data/holdout_customers"]
    assert per_row.values.mean() == pytest.approx(run.data.metrics["quality/map_at_7"], abs=1e-12)


def test_recommender_beats_popularity(recommender_run: TrainResult) -> None:
    m = recommender_run.metrics
    assert m["holdout_customers"] >= 50
    assert m["map_at_7"] > m["popularity_map_at_7"] + 0.01, m


def test_score_of_a_record_equals_the_batch_row(
    recommender: BoostedRecommender, recommender_bank: Tables, catalogue: Catalogue
) -> None:
    assert isinstance(recommender, RecommenderScorer)
    frame = compute_features(recommender_bank, END_MONTH, catalogue).iloc[:300]
    batch = recommender.score_inputs(frame_inputs(recommender, frame))
    records = dict(to_records(frame))
    assert len(records) == len(frame)
    for i, customer_id in enumerate(frame.index):
        single = recommender.score(records[str(customer_id)])
        assert single.shape == (len(recommender.product_ids),)
        np.testing.assert_allclose(single, batch[i], rtol=0, atol=1e-12, err_msg=customer_id)
    assert ((batch >= 0) & (batch <= 1)).all()


def test_scores_unseen_customer_and_missing_values(recommender: BoostedRecommender) -> None:
    scores = recommender.score({"held__current_account": 1, "age": None, "tier": "unknown"})
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert not np.array_equal(scores, recommender.score({}))  # holdings move the scores


def test_reasons_follow_the_largest_contributions(
    recommender: BoostedRecommender, recommender_bank: Tables, catalogue: Catalogue
) -> None:
    frame = compute_features(recommender_bank, END_MONTH, catalogue).iloc[:50]
    for _, record in to_records(frame):
        best = int(np.argmax(recommender.score(record)))
        reasons = recommender.reasons(record, best)
        assert 1 <= len(reasons) <= 3
        contrib = recommender.contributions(record, best)
        assert reasons[0].code == max(contrib, key=lambda code: contrib[code])
        assert all(r.text == REASON_TEXTS[r.code] for r in reasons)


def hand_built_recommender() -> TwoStageRecommender:
    """Three products with known weights: holding ``a`` points at ``c`` (collaborative),
    re-adding counts double, ``age`` pushes ``b``."""
    design = TabularDesign.fit(pd.DataFrame({"age": [20.0, 40.0, 60.0]}), ["age"], {})
    projection = np.zeros((3, 3))
    projection[2, 0] = 1.0  # c's collaborative score = held a
    return TwoStageRecommender(
        product_ids=["a", "b", "c"],
        popularity=np.array([0.02, 0.02, 0.02]),
        projection=projection,
        customer_design=design,
        interaction_weights=np.array([[0.0], [1.0], [0.0]]),
        pair_mean=np.zeros(3),
        pair_scale=np.ones(3),
        pair_weights=np.array([1.5, 2.0, 0.0]),
        intercept=-3.0,
    )


def test_reasons_of_a_hand_built_model_name_the_driving_term() -> None:
    model = hand_built_recommender()
    baseline = model.score({"age": 40})
    re_add = {"age": 40, "dropped__b": 1}
    assert model.score(re_add)[1] > baseline[1]
    assert [r.code for r in model.reasons(re_add, 1)] == ["held_before"]
    holds_a = {"age": 40, "held__a": 1}
    assert model.score(holds_a)[2] > baseline[2]
    assert model.reasons(holds_a, 2)[0].code == "collaborative"
    older = {"age": 60}
    assert model.score(older)[1] > baseline[1]
    assert model.reasons(older, 1)[0].code == "life_stage"
    # Nothing raises a: the least negative term is named, never an invented one.
    assert len(model.reasons({"age": 40}, 0)) == 1


def test_scorer_pickles_to_identical_scores(recommender: BoostedRecommender) -> None:
    record = {"held__current_account": 1, "age": 41, "income": 52_000.0, "tier": "mass"}
    clone = pickle.loads(pickle.dumps(recommender))
    assert np.array_equal(clone.score(record), recommender.score(record))


# -- churn ------------------------------------------------------------------------------------


def test_churn_ranks_leavers_and_is_registered(
    churn_run: TrainResult, train_settings: Settings, bank: Tables, catalogue: Catalogue
) -> None:
    assert churn_run.metrics["roc_auc"] > 0.75, churn_run.metrics
    assert 0.0 <= churn_run.metrics["brier"] < 0.25
    loaded = Registry(train_settings).promote(churn_run.model_name, churn_run.version)
    assert loaded.aliases == ["champion"]
    model = Registry(train_settings).load(churn_run.model_name, "champion").scorer
    assert isinstance(model, ChurnScorer)
    frame = compute_features(bank, END_MONTH, catalogue).iloc[:200]
    batch = model.predict_frame(frame)  # type: ignore[attr-defined]
    for i, (_, record) in enumerate(to_records(frame)):
        assert model.predict_proba(record) == batch[i]
    riskiest = next(r for _, r in to_records(frame.iloc[[int(np.argmax(batch))]]))
    reasons = model.reasons(riskiest)
    assert 1 <= len(reasons) <= 3
    assert all(r.text and r.code in model.feature_names for r in reasons)


def test_churn_logs_calibration_plot_and_table(
    churn_run: TrainResult, train_settings: Settings
) -> None:
    client = MlflowClient(train_settings.tracking_uri)
    logged = {a.path for a in client.list_artifacts(churn_run.run_id)}
    assert {"calibration.png", "calibration.csv", "feature_importance.png"} <= logged, logged
    plot = Path(client.download_artifacts(churn_run.run_id, "feature_importance.png"))
    width, height = _png_size(plot)
    assert width == 800 and 300 < height < 700, (width, height)
    local = Path(client.download_artifacts(churn_run.run_id, "calibration.csv"))
    table = pd.read_csv(local)
    assert list(table.columns) == ["customers", "predicted", "observed"]
    assert table["customers"].sum() == churn_run.metrics["holdout_customers"]
    assert np.all(np.diff(table["predicted"]) >= 0)
    logged = client.get_run(churn_run.run_id).data.metrics
    assert logged["quality/brier"] == churn_run.metrics["brier"]
    assert {"time/train_seconds", "data/holdout_customers"} <= set(logged)


def test_churn_logs_per_row_holdout_values_the_gate_pairs(
    churn_run: TrainResult, train_settings: Settings, bank: Tables, catalogue: Catalogue
) -> None:
    """The labels and scores of every holdout customer reproduce the logged ROC-AUC, and a
    second version trained on the same data is compared on the paired bootstrap."""
    registry = Registry(train_settings)
    raw = registry.run_artifact(churn_run.run_id, ARTIFACT_FILE)
    assert raw is not None
    per_row = HoldoutValues.from_bytes(raw)
    assert per_row.labels is not None and per_row.scores is not None
    assert per_row.rows == churn_run.metrics["holdout_customers"]
    assert roc_auc_score(per_row.labels, per_row.scores) == pytest.approx(
        churn_run.metrics["roc_auc"], abs=1e-12
    )
    settings = train_settings.model_copy(update={"churn_model_name": "nbo-churn-paired"})
    first = train_churn(bank, catalogue, settings)
    second = train_churn(bank, catalogue, settings, config=ChurnConfig(c=0.05))
    found = compare(registry, "nbo-churn-paired", first.version, second.version).gate
    assert found is not None and found.method == "paired bootstrap", found
    assert found.rows == per_row.rows
    assert found.diff == pytest.approx(second.metrics["roc_auc"] - first.metrics["roc_auc"])


def test_failed_training_registers_nothing(
    bank: Tables, catalogue: Catalogue, train_settings: Settings
) -> None:
    """Nobody ever leaves: every churn label is 0, so the fit must fail inside the run."""
    settings = train_settings.model_copy(update={"churn_model_name": "nbo-churn-never-left"})
    stayers = Tables(
        customers=bank.customers.assign(
            left_on=pd.Series(pd.NaT, index=bank.customers.index, dtype="datetime64[ns]")
        ),
        holdings=bank.holdings,
        behaviour=bank.behaviour,
    )
    with pytest.raises(DatasetError, match="churners and stayers"):
        train_churn(stayers, catalogue, settings)
    client = MlflowClient(settings.tracking_uri)
    assert client.search_model_versions("name = 'nbo-churn-never-left'") == []
    runs = client.search_runs(
        [Registry(settings).experiment_id],
        filter_string="tags.`nbo.kind` = 'churn'",
        order_by=["attributes.start_time DESC"],
    )
    assert runs[0].info.status == "FAILED"


def test_artifacts_stay_under_home(recommender_run: TrainResult, train_settings: Settings) -> None:
    version = Registry(train_settings).version(recommender_run.model_name, recommender_run.version)
    assert version.source is not None
    assert version.source.startswith(train_settings.artifact_root)
    assert Path(train_settings.home).exists()


def test_runs_record_the_moments_version(
    recommender_run: TrainResult, churn_run: TrainResult, train_settings: Settings
) -> None:
    """Both training runs log the version of the moment rules their features used."""
    client = MlflowClient(train_settings.tracking_uri)
    expected = load_moments(train_settings.moments_path).version
    for run in (recommender_run, churn_run):
        assert client.get_run(run.run_id).data.params["moments_version"] == expected
        assert run.params["moments_version"] == expected
