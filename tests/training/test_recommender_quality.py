"""The boosted recommender: no leakage, beats popularity, explained offers, the pair ranker."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.catalogue import Catalogue
from core.customer_facts import customer_facts
from core.decisioning import load_decisioning
from core.scoring.base import RecommenderScorer
from core.scoring.boosted import REASON_TEXTS, BoostedRecommender
from core.scoring.trees import FlatTrees
from core.settings import Settings
from core.suitability import exclusion
from core.tables import Tables
from features.pointintime import compute_features, to_records
from features.synthetic import generate_bank
from training.datasets import DatasetError
from training.evaluate_recommender import (
    PANEL_END_PROFILE,
    PanelResult,
    cut,
    evaluate_tables,
    without_panel_end_profile,
)
from training.labels import added_products, snapshot_months
from training.metrics import map_at_k
from training.pair_ranker import (
    PairLayout,
    PairTraining,
    adder_inputs,
    export_pair_trees,
    fit_pair_model,
    fit_temperature,
)
from training.population import training_features
from training.recommender import RecommenderConfig
from training.recommender_data import align, customer_fold, frame_inputs
from training.served_lists import ServedFilter

END_MONTH = date(2025, 12, 31)
SMALL = RecommenderConfig(max_iter=40, max_leaf_nodes=7, min_samples_leaf=20, bags=2)


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return generate_bank(customers=8000, months=8, seed=5, catalogue=catalogue, end_month=END_MONTH)


def _dates(bank: Tables) -> tuple[date, date]:
    months = snapshot_months(bank)
    return months[-2].date(), months[-1].date()


@pytest.fixture(scope="module")
def result(bank: Tables, catalogue: Catalogue) -> PanelResult:
    settings = Settings()
    served = ServedFilter(
        catalogue,
        load_decisioning(settings.decisioning_path, catalogue),
        "app",
        settings.risk_assessment_validity_days,
    )
    return evaluate_tables(bank, catalogue, *_dates(bank), SMALL, served=served)


# -- quality and leakage ----------------------------------------------------------------------


def test_beats_popularity_on_a_synthetic_bank(result: PanelResult) -> None:
    m = result.evaluation.metrics
    assert m["customers"] >= 50
    assert m["map_at_7"] > m["popularity_map_at_7"] + 0.02, m
    assert 0 < m["catalogue_coverage"] <= 1


def test_served_lists_are_scored_beside_the_unfiltered_ones(
    result: PanelResult, bank: Tables, catalogue: Catalogue
) -> None:
    """Served MAP@7 recomputed by hand from the same model's scores and the filter."""
    assert result.served is not None
    until, target = _dates(bank)
    ids = [p.id for p in catalogue.holdable]
    past = cut(bank, pd.Timestamp(until))
    snapshot = align(
        training_features(past, until, catalogue),
        added_products(bank, pd.Timestamp(until), pd.Timestamp(target), ids),
        ids,
    )
    adders = snapshot.added.sum(axis=1) > 0
    features = snapshot.features[adders]
    scorer = result.fitted.scorer
    scores = scorer.score_inputs(frame_inputs(scorer, features))
    settings = Settings()
    config = load_decisioning(settings.decisioning_path, catalogue)
    lists = []
    for row, (_, record) in enumerate(to_records(features)):
        facts = customer_facts(record)
        ok = [
            i
            for i, pid in enumerate(ids)
            if exclusion(catalogue.get(pid), facts, until, settings.risk_assessment_validity_days)
            is None
            and config.channel_rule_against("app", catalogue.get(pid)) is None
        ]
        lists.append(sorted(ok, key=lambda i: -scores[row, i])[:7])
    actual = [set(np.flatnonzero(r).tolist()) for r in snapshot.added[adders] > 0]
    assert result.served["served_map_at_7"] == pytest.approx(map_at_k(actual, lists, 7))
    assert result.served["served_channel"] == "app"


def test_target_month_cannot_change_the_ranking(
    bank: Tables, catalogue: Catalogue, result: PanelResult
) -> None:
    """Rewrite everything dated after ``train_until`` in every table: the target month's
    holdings (everyone adds two more products) and behaviour (balances, logins, activity
    reversed), and in the customers table a departure dated in the target month for a
    tenth of the customers and a copy of a tenth of them joining then. Same rankings."""
    train_until, target = _dates(bank)
    later = pd.Timestamp(target)
    holdings = bank.holdings.copy()
    last = holdings["month"] == later
    products = [p.id for p in catalogue.holdable]
    for pid in products[:2]:
        holdings.loc[last, pid] = 1
    behaviour = bank.behaviour.copy()
    month = behaviour["month"] == later
    behaviour.loc[month, "balance"] = behaviour.loc[month, "balance"] * 10 + 1
    behaviour.loc[month, "logins"] = 0
    behaviour.loc[month, "active"] = ~behaviour.loc[month, "active"].astype("boolean")
    customers = bank.customers.copy()
    tenth = customers.index[::10]
    customers.loc[tenth, "left_on"] = later
    joiners = customers.loc[tenth].assign(
        customer_id=lambda f: "NEW-" + f["customer_id"].astype(str), joined_on=later, left_on=pd.NaT
    )
    customers = pd.concat([customers, joiners], ignore_index=True)
    changed = replace(bank, customers=customers, holdings=holdings, behaviour=behaviour)
    past = cut(changed, pd.Timestamp(train_until))
    assert past.customers["customer_id"].isin(joiners["customer_id"]).sum() == 0
    assert not (past.customers["left_on"] > pd.Timestamp(train_until)).any()
    other = evaluate_tables(changed, catalogue, train_until, target, SMALL)
    common = result.evaluation.customers.intersection(other.evaluation.customers)
    assert len(common) >= 50
    before = pd.DataFrame(result.evaluation.ranking, index=result.evaluation.customers)
    after = pd.DataFrame(other.evaluation.ranking, index=other.evaluation.customers)
    pd.testing.assert_frame_equal(before.loc[common], after.loc[common])
    assert other.evaluation.metrics != result.evaluation.metrics  # the labels did change


def test_panel_end_profile_fields_are_not_inputs(bank: Tables, catalogue: Catalogue) -> None:
    """The Santander evaluation's inputs do not depend on the fields the panel holds only as
    of its last month: shuffling each across customers (activity in every month) leaves
    every feature of every customer unchanged once they are dropped."""
    rng = np.random.default_rng(3)
    customers = bank.customers.copy()
    for column in PANEL_END_PROFILE:
        customers[column] = rng.permutation(customers[column].to_numpy())
    behaviour = bank.behaviour.copy()
    behaviour["active"] = rng.permutation(behaviour["active"].to_numpy())
    shuffled = replace(bank, customers=customers, behaviour=behaviour)
    as_of = snapshot_months(bank)[-2].date()
    plain = compute_features(without_panel_end_profile(bank), as_of, catalogue)
    other = compute_features(without_panel_end_profile(shuffled), as_of, catalogue)
    pd.testing.assert_frame_equal(plain, other)
    # ...while without dropping them the shuffle does reach the features (the test can fail).
    assert not compute_features(shuffled, as_of, catalogue).equals(
        compute_features(bank, as_of, catalogue)
    )


def test_unseen_customers_are_cross_fitted_by_customer(
    bank: Tables, catalogue: Catalogue, result: PanelResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every adder is scored, each by a model whose training rows hold none of its fold."""
    import training.evaluate_recommender as module

    trained_on: list[set[str]] = []
    real_fit = module.fit_recommender

    def recording_fit(snapshots: Any, *args: Any, **kwargs: Any) -> Any:
        trained_on.append({str(c) for s in snapshots for c in s.features.index})
        return real_fit(snapshots, *args, **kwargs)

    monkeypatch.setattr(module, "fit_recommender", recording_fit)
    quick = replace(SMALL, max_iter=15, bags=1)  # the protocol is under test, not quality
    crossed = evaluate_tables(bank, catalogue, *_dates(bank), quick, unseen_customers=True, folds=2)
    assert crossed.evaluation.metrics["customers"] == result.evaluation.metrics["customers"]
    assert len(trained_on) == 2
    scored = crossed.evaluation.customers.astype(str)
    fold_of = dict(zip(scored, customer_fold(scored, 2), strict=True))
    for fold, seen in enumerate(trained_on):
        held_out = {c for c, f in fold_of.items() if f == fold}
        assert held_out and not held_out & seen
    m = crossed.evaluation.metrics
    assert m["map_at_7"] > m["popularity_map_at_7"]


def test_unseen_customers_need_two_folds(bank: Tables, catalogue: Catalogue) -> None:
    with pytest.raises(DatasetError, match="--folds"):
        evaluate_tables(bank, catalogue, *_dates(bank), SMALL, unseen_customers=True, folds=1)


# -- the scorer at request time ---------------------------------------------------------------


def test_record_scores_equal_batch_and_reasons_are_the_models(
    bank: Tables, catalogue: Catalogue, result: PanelResult
) -> None:
    scorer = result.fitted.scorer
    assert isinstance(scorer, RecommenderScorer)
    frame = compute_features(bank, _dates(bank)[0], catalogue).iloc[:200]
    batch = scorer.score_inputs(frame_inputs(scorer, frame))
    for i, (_, record) in enumerate(to_records(frame)):
        single = scorer.score(record)
        np.testing.assert_allclose(single, batch[i], rtol=0, atol=1e-12)
        if i < 40:
            best = int(np.argmax(np.where(record_held(scorer, record), -1, single)))
            reasons = scorer.reasons(record, best)
            assert 1 <= len(reasons) <= 3
            contrib = scorer.contributions(record, best)
            assert reasons[0].code == max(contrib, key=lambda code: contrib[code])
            assert all(r.text == REASON_TEXTS[r.code] for r in reasons)
    assert np.isfinite(scorer.score({})).all()  # an empty record is scored, not refused


def record_held(scorer: BoostedRecommender, record: dict[str, object]) -> np.ndarray:
    return np.array([bool(record.get(f"held__{p}")) for p in scorer.product_ids])


def test_held_before_is_named_when_the_model_learned_it() -> None:
    """A toy bank where customers re-add exactly what they dropped: the reason says so."""
    products = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    n = 1200
    dropped = rng.integers(0, 3, n)
    fields = {f"dropped__{p}": (dropped == i).astype(float) for i, p in enumerate(products)}
    frame = pd.DataFrame({**fields, "age": rng.integers(20, 70, n).astype(float)})
    from training.recommender import fit_recommender
    from training.recommender_data import Snapshot

    added = np.eye(3)[dropped]
    fitted = fit_recommender([Snapshot(frame, added)], products, SMALL)
    record = {"dropped__b": 1, "age": 40}
    assert int(np.argmax(fitted.scorer.score(record))) == 1
    assert fitted.scorer.reasons(record, 1)[0].code == "held_before"


def test_a_prepared_record_gives_the_scores_and_reasons_of_the_single_calls(
    bank: Tables, catalogue: Catalogue, result: PanelResult
) -> None:
    scorer = result.fitted.scorer
    frame = compute_features(bank, _dates(bank)[0], catalogue).iloc[:30]
    for _, record in to_records(frame):
        prepared = scorer.prepare(record)
        single = scorer.score(record)
        np.testing.assert_array_equal(prepared.scores, single)  # bit for bit
        batch_path = scorer.score_inputs(scorer.record_inputs(record))[0]
        np.testing.assert_allclose(single, batch_path, rtol=0, atol=1e-12)
        top = [int(j) for j in np.argsort(-single)[:3]]
        expected = [scorer.reasons(record, j) for j in top]
        assert [prepared.reasons([j])[0] for j in top] == expected
        assert prepared.reasons(top) == expected
        assert prepared.reasons(top[::-1]) == expected[::-1]
        batch = prepared.contributions(top)
        for j, contrib in zip(top, batch, strict=True):
            one = scorer.contributions(record, j)
            assert contrib.keys() == one.keys()
            assert all(abs(contrib[k] - one[k]) < 1e-9 for k in one)
    assert scorer.prepare({}).reasons([]) == []


def test_a_model_pickled_before_the_deeper_history_reads_its_old_fields(
    result: PanelResult,
) -> None:
    from core.scoring.boosted import LEGACY_HOLDING_PREFIXES, LEGACY_PROFILE_INPUTS

    scorer = result.fitted.scorer
    state = scorer.__getstate__()
    del state["profile_inputs"], state["holding_prefixes"], state["categories"]
    old = BoostedRecommender.__new__(BoostedRecommender)
    old.__setstate__(state)
    assert old.profile_inputs == LEGACY_PROFILE_INPUTS
    assert old.holding_prefixes == LEGACY_HOLDING_PREFIXES
    assert old.categories == ()
    assert "months_since_held__payroll" not in old.feature_names
    assert "acquisition_channel" not in old.feature_names


@pytest.mark.slow  # 9 s (a recommender fitted with a categorical input); pytest -m slow
def test_the_acquisition_channel_becomes_one_hot_inputs(bank: Tables, catalogue: Catalogue) -> None:
    config = replace(SMALL, max_iter=5, categorical_inputs=("acquisition_channel", "region"))
    scorer = evaluate_tables(bank, catalogue, *_dates(bank), config).fitted.scorer
    levels = dict(scorer.categories)
    assert set(levels["region"]) <= {
        "Madrid",
        "Barcelona",
        "Valencia",
        "Sevilla",
        "Bilbao",
        "Malaga",
        "Zaragoza",
        "Other",
    }
    assert set(levels["acquisition_channel"]) <= {"branch", "online", "advisor", "partner"}
    assert "acquisition_channel" in scorer.feature_names
    record = {"acquisition_channel": levels["acquisition_channel"][0]}
    assert np.isfinite(scorer.score(record)).all()
    row = scorer.record_inputs(record)[0]
    column = scorer.columns.index(f"acquisition_channel={levels['acquisition_channel'][0]}")
    assert row[column] == 1.0
    assert scorer.record_inputs({"acquisition_channel": "unheard of"})[0][column] == 0.0


def test_a_scorer_with_only_score_and_reasons_gets_its_prepare_from_them() -> None:
    from core.scoring.base import PreparedFromScores, Reason

    calls: list[object] = []

    class OnlyScores(PreparedFromScores):
        def __init__(self) -> None:
            self.kind = "recommender"
            self.product_ids = ["a", "b", "c", "d"]
            self.feature_names: list[str] = []
            self.popularity = np.zeros(4)

        def score(self, record: object) -> np.ndarray:
            calls.append("score")
            return np.arange(4.0)

        def reasons(self, record: object, product_index: int) -> list[Reason]:
            calls.append(product_index)
            return [Reason(code=str(product_index), text="")]

    fake = OnlyScores()
    assert isinstance(fake, RecommenderScorer)
    prepared = fake.prepare({"age": 40})
    np.testing.assert_array_equal(prepared.scores, np.arange(4.0))
    assert [r[0].code for r in prepared.reasons([3, 1])] == ["3", "1"]
    assert calls == ["score", 3, 1]  # scored once, each product explained when asked


# -- the pair ranker ----------------------------------------------------------------------------


def test_pair_trees_equal_the_binary_model_for_every_product(result: PanelResult) -> None:
    scorer = result.fitted.scorer
    layout = PairLayout.of(scorer)
    n_products = len(scorer.product_ids)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, len(scorer.columns)))
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take their learnt side
    customers = np.repeat(np.arange(len(x)), n_products)
    products = np.tile(np.arange(n_products), len(x))
    rows = layout.rows(x, customers, products)
    own = layout.names.index("held_prev__own")
    signal = np.nan_to_num(rows[:, own]) + (products % 3 == 0) + rng.normal(size=len(rows))
    seen = products != n_products - 1  # one product never appears in training
    training = PairTraining(rows[seen], (signal[seen] > 1).astype(np.int64))
    model = fit_pair_model(
        training,
        layout,
        max_iter=30,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=5,
        seed=1,
    )
    assert model is not None
    assert any(  # the product is used as a categorical split, so resolving it is tested
        (p.nodes["is_categorical"] == 1).any() for it in model._predictors for p in it
    )
    trees = export_pair_trees(model, layout)  # the last product: never seen in the fit
    expected = model.decision_function(rows).reshape(len(x), n_products)
    np.testing.assert_allclose(trees.raw(x), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(trees.raw(x, compiled=False), expected, rtol=0, atol=1e-9)
    flat = FlatTrees(trees)
    for i in range(5):  # the credits of every product's trees add up to its log-odds
        _, leaves = flat.raw_leaves_row(x[i])
        credits = flat.leaf_credits(leaves, np.arange(n_products), x.shape[1])
        np.testing.assert_allclose(flat.bias + credits.sum(axis=1), expected[i], atol=1e-9)


def test_the_blend_is_the_multiclass_log_probability_plus_the_pair_log_odds(
    bank: Tables, catalogue: Catalogue, result: PanelResult
) -> None:
    scorer = result.fitted.scorer
    assert scorer.pair_trees is not None and scorer.pair_weight == SMALL.pair_weight > 0
    frame = compute_features(bank, _dates(bank)[0], catalogue).iloc[:50]
    x = frame_inputs(scorer, frame)
    mc = scorer.trees.raw(x)
    log_p = mc - mc.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    blended = (log_p + scorer.pair_weight * scorer.pair_trees.raw(x)) / scorer.blend_temperature
    expected = np.exp(blended) / np.exp(blended).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(scorer.score_inputs(x), expected, rtol=0, atol=1e-12)
    alone = replace(scorer, pair_weight=0.0)  # weight 0: the multiclass ranker's softmax
    np.testing.assert_allclose(alone.score_inputs(x), np.exp(log_p), rtol=0, atol=1e-12)


def test_the_blend_temperature_is_the_one_that_fits_the_training_additions(
    bank: Tables, catalogue: Catalogue, result: PanelResult
) -> None:
    scorer = result.fitted.scorer
    assert scorer.blend_temperature == result.fitted.stats["blend_temperature"]
    months = snapshot_months(bank)
    snapshot = align(
        compute_features(bank, months[-3].date(), catalogue),
        added_products(bank, months[-3], months[-2], scorer.product_ids),
        scorer.product_ids,
    )

    def nll(temperature: float) -> float:
        at = replace(scorer, blend_temperature=temperature)
        who = snapshot.added.sum(axis=1) > 0
        p = at.score_inputs(frame_inputs(at, snapshot.features[who]))
        added = snapshot.added[who] > 0
        share = added / added.sum(axis=1, keepdims=True)
        return float(-(share * np.log(np.where(added, p, 1.0))).sum() / len(p))

    fitted = nll(scorer.blend_temperature)  # on a training month: the minimum, near enough
    assert fitted <= nll(1.0) + 1e-9
    assert fitted <= nll(scorer.blend_temperature * 1.3) and fitted <= nll(
        scorer.blend_temperature / 1.3
    )
    assert fit_temperature(scorer, adder_inputs(scorer, [snapshot]), 10_000, 7) > 0
