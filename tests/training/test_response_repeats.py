"""``nbo evaluate response --repeats``: repeated stratified CV, means over fold seeds."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.support.shared_data import bank_marketing_sample
from training.response import ALGORITHMS, cross_validate, load_bank_marketing
from training.response_repeats import fold_seeds, repeated_cross_validate

SAMPLE_EVERY = 24  # ~860 rows of the dev file: a few seconds per CV
FOLDS = 3
SEED = 7


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bank_marketing_sample(tmp_path_factory.mktemp("bank"), SAMPLE_EVERY)


def evaluate(*args: str) -> Any:
    result = CliRunner().invoke(app, ["evaluate", "response", *args])
    assert result.exit_code == 0, result.output
    return result


def test_one_repeat_is_todays_single_split_figure(sample: Path) -> None:
    """The default (--repeats 1) prints exactly what a single seeded CV gives, no new keys."""
    data = load_bank_marketing(sample)
    single = cross_validate(data, folds=FOLDS, seed=SEED)
    assert repeated_cross_validate(data, folds=FOLDS, seed=SEED, repeats=1) == single
    args = ["--bank-marketing", str(sample), "--folds", str(FOLDS), "--seed", str(SEED), "--json"]
    printed = json.loads(evaluate(*args).output)
    assert printed == {**single, "rows": len(data)}
    assert json.loads(evaluate(*args, "--repeats", "1").output) == printed


def test_two_repeats_report_the_mean_of_the_two_fold_seeds(sample: Path) -> None:
    """Each candidate run alone with --seed 7 and --seed 8; the repeated run chooses by the
    mean ROC-AUC and reports the means, standard deviations and per-seed values."""
    data = load_bank_marketing(sample)
    alone = {
        a: [cross_validate(data, FOLDS, s, algorithms=(a,)) for s in (SEED, SEED + 1)]
        for a in ALGORITHMS
    }
    mean_auc = {a: fmean(r["roc_auc"] for r in alone[a]) for a in ALGORITHMS}
    best = max(ALGORITHMS, key=lambda a: mean_auc[a])
    args = ["--bank-marketing", str(sample), "--folds", str(FOLDS), "--seed", str(SEED)]
    got = json.loads(evaluate(*args, "--repeats", "2", "--json").output)

    assert got["algorithm"] == best
    assert got["repeats"] == 2
    assert got["fold_seeds"] == [SEED, SEED + 1]
    assert got["rows"] == len(data)
    for metric in ("roc_auc", "pr_auc", "brier", "top_decile_lift"):
        each = [r[metric] for r in alone[best]]
        assert got[f"{metric}_per_repeat"] == pytest.approx(each, abs=1e-12)
        assert got[metric] == pytest.approx(fmean(each), abs=1e-12)
        assert got[f"{metric}_sd"] == pytest.approx(stdev(each), abs=1e-12)
    for a in ALGORITHMS:
        assert got[f"roc_auc_{a}"] == pytest.approx(mean_auc[a], abs=1e-12)
        assert got[f"roc_auc_{a}_per_repeat"] == pytest.approx(
            [r["roc_auc"] for r in alone[a]], abs=1e-12
        )
    # the two splits differ, so the spread is not zero (a repeat of one seed would give 0)
    assert got["roc_auc_sd"] > 0

    text = evaluate(*args, "--repeats", "2").output
    assert f"fold seeds {SEED} to {SEED + 1}" in text
    assert f"ROC-AUC     {got['roc_auc']:.4f} (sd {got['roc_auc_sd']:.4f}" in text


@pytest.mark.parametrize("repeats", ["0", "-3"])
def test_fewer_than_one_repeat_is_refused_naming_the_option(sample: Path, repeats: str) -> None:
    result = CliRunner().invoke(
        app, ["evaluate", "response", "--bank-marketing", str(sample), "--repeats", repeats]
    )
    assert result.exit_code == 2
    assert "--repeats" in result.output
    with pytest.raises(ValueError, match="repeats"):
        fold_seeds(0, int(repeats))


def test_repeats_with_a_held_out_file_is_refused(sample: Path) -> None:
    args = ["--bank-marketing", str(sample), "--test", str(sample), "--repeats", "2"]
    result = CliRunner().invoke(app, ["evaluate", "response", *args])
    assert result.exit_code == 2
    assert "--repeats" in result.output


def test_help_shows_an_example_with_repeats() -> None:
    result = CliRunner().invoke(app, ["evaluate", "response", "--help"])
    assert result.exit_code == 0
    assert "--repeats" in result.output
    assert "Example, fold seeds 0-4: nbo evaluate response" in result.output
    assert "--repeats 5 --json" in result.output
