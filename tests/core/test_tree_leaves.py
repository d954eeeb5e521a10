"""Reasons credited from the scoring walk's leaves (parent pointers), not a second walk:
the same scores bit for bit, the same credits as crediting a recorded walk, the same
reasons, and no tree walked twice on the request path."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

import core.scoring.tree_kernels as kernels
from core.catalogue import Catalogue
from core.scoring.base import Reason
from core.scoring.boosted import BoostedRecommender
from core.scoring.design import floats
from core.scoring.trees import FlatTrees, TreeEnsemble
from features.pointintime import compute_features, to_records
from features.synthetic import generate_bank
from training.labels import snapshot_months
from training.tree_export import average_ensembles, export_trees

END_MONTH = date(2025, 12, 31)


# -- FlatTrees: leaves, parents and credits -----------------------------------------------------


def _sklearn_ensemble() -> tuple[TreeEnsemble, np.ndarray]:
    """A bagged 5-output ensemble (output 4 is never a label) and rows with NaN inputs."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(900, 6))
    x[rng.random(x.shape) < 0.15] = np.nan
    y = (np.nan_to_num(x[:, 0]) > 0).astype(int) + 2 * (np.nan_to_num(x[:, 3]) > 0.5)
    models = [
        HistGradientBoostingClassifier(
            max_iter=12, max_leaf_nodes=5 + 6 * seed, max_features=0.6, random_state=seed
        ).fit(x[:500], y[:500])
        for seed in range(2)
    ]
    return average_ensembles([export_trees(m, 5) for m in models]), x[500:]


def _hand_ensemble() -> TreeEnsemble:
    """Three outputs: output 0 has a split tree and a tree that never splits, output 1 only
    a never-splitting tree, output 2 no tree at all."""
    split = {
        "feature": np.array([1, 0, 0, 0, 0]),
        "threshold": np.array([0.5, -1.0, 0.0, 0.0, 0.0]),
        "missing_left": np.array([True, False, False, False, False]),
        "left": np.array([1, 3, 2, 3, 4]),
        "right": np.array([2, 4, 2, 3, 4]),
        "value": np.array([0.0, 0.0, 0.7, -0.2, 0.4]),
        "expected": np.array([0.3, 0.1, 0.7, -0.2, 0.4]),
    }
    stump = {
        name: np.array([value])
        for name, value in (
            ("feature", 0),
            ("threshold", 0.0),
            ("missing_left", False),
            ("left", 0),
            ("right", 0),
            ("value", 0.25),
            ("expected", 0.25),
        )
    }
    return TreeEnsemble.pack(
        [split, stump, stump], tree_class=np.array([0, 0, 1]), baseline=np.zeros(3), depth=2
    )


@pytest.fixture(scope="module")
def ensembles() -> list[tuple[TreeEnsemble, np.ndarray]]:
    trees, rows = _sklearn_ensemble()
    rng = np.random.default_rng(2)
    hand_rows = rng.normal(size=(60, 2))
    hand_rows[rng.random(hand_rows.shape) < 0.3] = np.nan
    return [(trees, rows), (_hand_ensemble(), hand_rows)]


def _walk_down(flat: FlatTrees, row: np.ndarray, tree: int) -> list[int]:
    """The oracle: tree ``tree``'s path for ``row``, root first, walked in plain Python."""
    at, path = int(tree) * flat.width, []
    while True:
        path.append(at)
        v = row[flat.feature[at]]
        go_left = flat.missing_left[at] if np.isnan(v) else v <= flat.threshold[at]
        to = int(flat.left[at] if go_left else flat.right[at])
        if to == at:
            return path
        at = to


def _walked_leaves(flat: FlatTrees, row: np.ndarray) -> np.ndarray:
    return np.array([_walk_down(flat, row, t)[-1] for t in flat.all_trees], dtype=np.int64)


def _walked_credits(flat: FlatTrees, row: np.ndarray, outputs: Sequence[int], n: int) -> Any:
    """The credits of a walk down each of the outputs' trees: every split credits its
    feature with the change in expected value, root first (the oracle)."""
    out = np.zeros((len(outputs), n))
    for slot, c in enumerate(outputs):
        for tree in flat.trees_of[c]:
            path = _walk_down(flat, row, tree)
            for at, to in itertools.pairwise(path):
                out[slot, flat.feature[at]] += flat.expected[to] - flat.expected[at]
    return out


def test_parents_lead_every_node_back_to_its_tree_root(
    ensembles: list[tuple[TreeEnsemble, np.ndarray]],
) -> None:
    for trees, _ in ensembles:
        flat = FlatTrees(trees)
        position = np.arange(len(flat.left))
        split = flat.left != position
        np.testing.assert_array_equal(flat.parent[flat.left[split]], position[split])
        np.testing.assert_array_equal(flat.parent[flat.right[split]], position[split])
        roots = flat.all_trees * flat.width
        assert (flat.parent[roots] == -1).all()
        for c in range(flat.n_outputs):  # order / start list each output's trees
            np.testing.assert_array_equal(
                flat.order[flat.start[c] : flat.start[c + 1]], flat.trees_of[c]
            )


def test_scoring_walk_leaves_give_the_same_scores_and_credits_as_a_recorded_walk(
    ensembles: list[tuple[TreeEnsemble, np.ndarray]],
) -> None:
    for trees, rows in ensembles:
        flat = FlatTrees(trees)
        n = rows.shape[1]
        chosen = [[0], [1], [2], [0, 2], [2, 1, 0], list(range(flat.n_outputs)), []]
        for row in rows:
            raw, leaves = flat.raw_leaves_row(row)
            np.testing.assert_array_equal(raw, trees.raw(row[None, :])[0])  # bit-identical
            np.testing.assert_array_equal(leaves, _walked_leaves(flat, row))
            assert not leaves.flags.writeable
            for outputs in chosen:
                expected = _walked_credits(flat, row, outputs, n)
                got = flat.leaf_credits(leaves, np.array(outputs, dtype=np.int64), n)
                np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
                np.testing.assert_array_equal(got, expected)  # same additions, same order
                plain = flat.leaf_credits(leaves, np.array(outputs), n, compiled=False)
                np.testing.assert_allclose(plain, expected, rtol=0, atol=1e-12)


def _tied_ensemble(rng: np.random.Generator, values: np.ndarray) -> TreeEnsemble:
    """Random full trees whose thresholds are drawn from ``values`` (so rows drawn from
    the same values land exactly on thresholds), either missing side at random."""
    trees = []
    for _ in range(40):
        depth = int(rng.integers(1, 5))
        n = 2 ** (depth + 1) - 1
        inner = np.arange(n) < 2**depth - 1
        position = np.arange(n)
        trees.append(
            {
                "feature": np.where(inner, rng.integers(0, 4, n), 0),
                "threshold": np.where(inner, rng.choice(values, n), 0.0),
                "missing_left": inner & (rng.random(n) < 0.5),
                "left": np.where(inner, 2 * position + 1, position),
                "right": np.where(inner, 2 * position + 2, position),
                "value": np.where(inner, 0.0, rng.normal(size=n)),
                "expected": rng.normal(size=n),
            }
        )
    return TreeEnsemble.pack(
        trees, tree_class=rng.integers(0, 3, len(trees)), baseline=np.zeros(3), depth=4
    )


def test_packed_walk_compares_exactly_at_ties_signed_zeros_infinities_and_nan() -> None:
    """The packed nodes compare threshold ranks, not floats: a value equal to a threshold,
    -0.0 against 0.0, infinities and NaN (each missing side) must go where the float
    comparison sends them."""
    rng = np.random.default_rng(5)
    values = np.array([-np.inf, -1.5, -0.0, 0.0, 1e-300, 0.25, 7.0, np.inf])
    thresholds = values[np.isfinite(values)]
    trees = _tied_ensemble(rng, thresholds)
    flat = FlatTrees(trees)
    rows = rng.choice(np.append(values, np.nan), size=(300, 4))
    for row in rows:
        raw, leaves = flat.raw_leaves_row(row)
        np.testing.assert_array_equal(leaves, _walked_leaves(flat, row))
        np.testing.assert_array_equal(raw, trees.raw(row[None, :])[0])
    # Codes: how many of an input's distinct thresholds lie strictly below the value.
    codes = flat.packed.codes(np.array([0.0, np.nan, np.inf, -np.inf]))
    for j, code in enumerate(codes):
        cuts = flat.packed.cuts[flat.packed.cut_start[j] : flat.packed.cut_start[j + 1]]
        value = [0.0, np.nan, np.inf, -np.inf][j]
        assert code == (0xFFFF if np.isnan(value) else int((cuts < value).sum()))


def test_trees_that_never_split_credit_nothing() -> None:
    flat = FlatTrees(_hand_ensemble())
    for row in (np.array([0.0, 0.0]), np.array([np.nan, np.nan]), np.array([-2.0, 1.0])):
        raw, leaves = flat.raw_leaves_row(row)
        credits = flat.leaf_credits(leaves, np.array([1, 2, 0]), 2)
        assert (credits[:2] == 0).all()  # a stump, and an output without trees
        np.testing.assert_allclose(flat.bias + flat.leaf_credits(leaves, [0, 1, 2], 2).sum(1), raw)
        np.testing.assert_array_equal(raw, _hand_ensemble().raw(row[None, :])[0])


def test_without_numba_the_numpy_fallbacks_give_the_same_leaves_and_credits(
    ensembles: list[tuple[TreeEnsemble, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    flats = [(trees, FlatTrees(trees), rows[:25]) for trees, rows in ensembles]
    compiled = [
        ([flat.raw_leaves_row(row) for row in rows], trees.raw(rows)) for trees, flat, rows in flats
    ]
    for name in ("raw_rows_compiled", "raw_leaves_compiled", "leaf_credits_compiled"):
        monkeypatch.setattr(kernels, name, None)
    for (trees, flat, rows), (results, batch) in zip(flats, compiled, strict=True):
        np.testing.assert_allclose(trees.raw(rows), batch, rtol=0, atol=1e-12)
        for row, (raw, leaves) in zip(rows, results, strict=True):
            plain_raw, plain_leaves = flat.raw_leaves_row(row)
            np.testing.assert_allclose(plain_raw, raw, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(plain_leaves, leaves)
            expected = _walked_credits(flat, row, [1, 0], row.shape[0])
            got = flat.leaf_credits(leaves, np.array([1, 0]), row.shape[0])
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# -- the recommender: the request path credits the scoring walk's leaves -----------------------


@pytest.fixture(scope="module")
def scorer(quick_recommender: BoostedRecommender) -> BoostedRecommender:
    """The run's quickly fitted recommender (``tests/conftest.py``)."""
    return quick_recommender


@pytest.fixture(scope="module")
def records(scorer: BoostedRecommender, catalogue: Catalogue) -> list[dict[str, Any]]:
    bank = generate_bank(customers=400, months=6, seed=9, catalogue=catalogue, end_month=END_MONTH)
    frame = compute_features(bank, snapshot_months(bank)[-1].date(), catalogue)
    out = [dict(record) for _, record in to_records(frame)][:300]
    rng = np.random.default_rng(0)
    fields = scorer.record_fields
    for record in out[::3]:  # missing inputs take their learnt side
        for name in rng.choice(fields, size=len(fields) // 3, replace=False):
            record[str(name)] = None
    return [*out, {}]


def _top(scorer: BoostedRecommender, record: dict[str, Any], k: int = 3) -> list[int]:
    return [int(j) for j in np.argsort(-scorer.score(record))[:k]]


@pytest.fixture
def walked_reasons(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Reasons with each ensemble's credits from a walk down the products' trees (the
    oracle; the same ``_group_credits`` otherwise)."""

    def reasons(scorer: BoostedRecommender, record: dict[str, Any], top: list[int]) -> Any:
        row = scorer.record_inputs(record)[0]

        def walked(flat: FlatTrees, leaves: Any, outputs: Any, n: int, **_: Any) -> Any:
            return _walked_credits(flat, row, [int(c) for c in outputs], n)

        with monkeypatch.context() as patch:
            patch.setattr(FlatTrees, "leaf_credits", walked)
            prepared = scorer.prepare(record)
            return prepared.reasons(top), prepared.contributions(top)

    yield reasons


def test_request_path_scores_are_bit_identical_and_reasons_equal_the_walked_ones(
    scorer: BoostedRecommender, records: list[dict[str, Any]], walked_reasons: Any
) -> None:
    for record in records:
        before = scorer.blended_inputs(scorer.record_inputs(record))[0]  # the batch path
        top = _top(scorer, record, 4)
        expected, expected_contrib = walked_reasons(scorer, record, top)
        prepared = scorer.prepare(record)
        np.testing.assert_array_equal(prepared.walk.raw, before)
        assert prepared.reasons(top) == expected
        contrib = prepared.contributions(top)
        np.testing.assert_array_equal(prepared.scores, scorer.score(record))
        assert [scorer.reasons(record, j) for j in top] == expected  # the one-offer calls
        for got, want in zip(contrib, expected_contrib, strict=True):
            assert got.keys() == want.keys()
            np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-12)


def test_a_prepared_record_is_explained_without_walking_a_tree_again(
    scorer: BoostedRecommender, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = records[1]
    top = _top(scorer, record)
    expected = [scorer.reasons(record, j) for j in top]
    scores = scorer.score(record)
    walks: list[str] = []
    real_walk_row = scorer._walk_row

    def counted(row: np.ndarray) -> Any:
        walks.append("scoring")
        return real_walk_row(row)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a tree was walked again")

    monkeypatch.setattr(scorer, "_walk_row", counted)
    prepared = scorer.prepare(record)
    monkeypatch.setattr(FlatTrees, "raw_leaves_row", refused)
    monkeypatch.setattr(TreeEnsemble, "raw", refused)
    monkeypatch.setattr(TreeEnsemble, "leaves", refused)
    assert prepared.reasons(top) == expected
    assert prepared.reasons(top[:1]) == expected[:1]
    np.testing.assert_array_equal(prepared.scores, scores)
    assert walks == ["scoring"]


def test_without_the_pair_blend_its_trees_are_neither_walked_nor_credited(
    scorer: BoostedRecommender, records: list[dict[str, Any]], walked_reasons: Any
) -> None:
    alone = replace(scorer, pair_weight=0.0)
    for record in records[:40]:
        prepared = alone.prepare(record)
        assert prepared.walk.pair_leaves is None
        raw = alone.trees.raw(alone.record_inputs(record))[0]
        np.testing.assert_array_equal(prepared.walk.raw, alone._blend(raw, None))
        top = _top(alone, record)
        assert prepared.reasons(top) == walked_reasons(alone, record, top)[0]


def test_models_pickled_before_the_leaves_load_and_explain_the_same(
    scorer: BoostedRecommender, records: list[dict[str, Any]]
) -> None:
    state = scorer.__getstate__()
    assert not any(isinstance(v, FlatTrees) for v in state.values())  # derived, not pickled
    loaded = pickle.loads(pickle.dumps(scorer))
    old = BoostedRecommender.__new__(BoostedRecommender)  # before the pair ranker, too
    old.__setstate__({k: v for k, v in state.items() if not k.startswith(("pair_", "blend_"))})
    assert old._pair_flat is None
    for record in records[:30]:
        top = _top(scorer, record)
        np.testing.assert_array_equal(loaded.score(record), scorer.score(record))
        assert loaded.prepare(record).reasons(top) == scorer.prepare(record).reasons(top)
        reasons: list[list[Reason]] = old.prepare(record).reasons(top)
        assert reasons == [old.reasons(record, j) for j in top]
        assert all(1 <= len(r) <= 3 for r in reasons)


# -- the one-row input path ---------------------------------------------------------------------


def _design_row(scorer: BoostedRecommender, record: dict[str, Any]) -> np.ndarray:
    """The batch construction (``design`` on a one-row batch): what training computes."""
    raw = floats([record.get(field) for field in scorer.record_fields])[None, :]
    texts = [np.array([record.get(name)], dtype=object) for name in scorer.text_fields]
    return scorer.design(raw, *texts)


def test_one_record_inputs_are_the_batch_design_bit_for_bit(
    scorer: BoostedRecommender, records: list[dict[str, Any]]
) -> None:
    """``record_inputs`` fills the row in place; it must equal ``design`` exactly, whatever
    the text fields hold (unknown levels, None, NaN, numbers, booleans) and whatever is
    missing."""
    odd_texts: list[object] = [None, "no such level", 3, float("nan"), True, ""]
    cases = [dict(r) for r in records]
    for i, case in enumerate(cases[: 6 * len(scorer.text_fields)]):
        case[scorer.text_fields[i % len(scorer.text_fields)]] = odd_texts[i % len(odd_texts)]
        case.pop(scorer.record_fields[i % len(scorer.record_fields)], None)
    cases += [{}, {"segment": scorer.segments[0], "tier": scorer.tiers[-1]}]
    for case in cases:
        fast, batch = scorer.record_inputs(case), _design_row(scorer, case)
        assert fast.shape == batch.shape == (1, len(scorer.columns))
        assert np.array_equal(fast, batch, equal_nan=True), case
