"""The non-inferiority gate on a real SQLite-backed MLflow registry, with planted per-row
holdout values whose answer is known; ``compare --json``; refusals in the history.

The planted holdout: 2,000 customers, 30% churners; the champion scores
``1.5 * label + noise`` (ROC-AUC 0.852). Candidates score the same customers:

* clearly better: ``3 * label + noise`` (+0.131, interval [+0.116, +0.145]);
* equal within the margin: the champion's scores plus small noise (-0.0016, interval
  [-0.0046, +0.0015]): lower than the champion, so a raw "no worse" rule would refuse it;
* clearly worse: ``0.5 * label + noise`` (-0.225).

(figures: ``paired_difference`` of the arrays below, seed 20261207, 1000 resamples)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from cli.registry import app
from core.settings import Settings, get_settings
from registry import promotion
from registry.client import Registry
from registry.compare import compare
from registry.holdout import HoldoutValues
from registry.promotion import PromotionRefused
from tests.support.registry import SEEDED_MODEL, register_churn, registry_settings, seeded_store

MODEL = SEEDED_MODEL
N = 2000
_rng = np.random.default_rng(42)
LABELS = (_rng.random(N) < 0.3).astype(int)
NOISE = _rng.normal(0, 1, N)
KEYS = [f"C{i:05d}" for i in range(N)]
CHAMPION = 1.5 * LABELS + NOISE
BETTER = 3 * LABELS + NOISE
EQUAL = CHAMPION + np.random.default_rng(1).normal(0, 0.15, N)
WORSE = 0.5 * LABELS + NOISE


def planted(registry: Registry, scores: np.ndarray, keys: list[str] = KEYS) -> int:
    """A churn version on the seeded data whose logged ROC-AUC and per-row values agree."""
    labels = LABELS[: len(scores)]
    auc = float(roc_auc_score(labels, scores))
    values = HoldoutValues.auc("roc_auc", labels, scores, keys)
    return register_churn(registry, MODEL, auc, per_row=values).version


MARGIN = 0.01
"""Tighter than the default, so the planted cases sit well inside or outside it."""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    seeded = registry_settings(tmp_path, seeded_store())
    return seeded.model_copy(update={"promotion_margin": MARGIN})


@pytest.fixture
def registry(settings: Settings) -> Registry:
    """The seeded registry with a planted champion (it beats version 1's 0.80 outright)."""
    registry = Registry(settings)
    champion = planted(registry, CHAMPION)
    promotion.promote(registry, MODEL, champion, reason="planted champion")
    return registry


def test_clearly_better_is_promoted_on_the_paired_bootstrap(registry: Registry) -> None:
    candidate = planted(registry, BETTER)
    _, verdict = promotion.promote(registry, MODEL, candidate, actor="ana")
    found = verdict.difference
    assert found is not None and found.method == "paired bootstrap"
    assert found.rows == N and found.low is not None and found.low > 0.1
    assert registry.alias_version(MODEL, "champion") == candidate
    last = registry.history(MODEL)[-1]
    assert last.outcome == "moved" and "paired bootstrap over 2000 holdout rows" in last.gate


def test_lower_but_equal_within_the_margin_is_promoted(registry: Registry) -> None:
    champion = registry.alias_version(MODEL, "champion")
    candidate = planted(registry, EQUAL)
    run = registry.run_data(registry.version(MODEL, candidate).run_id)
    champion_run = registry.run_data(registry.version(MODEL, champion or 0).run_id)
    assert run.metrics["roc_auc"] < champion_run.metrics["roc_auc"]  # lower, to the 3rd decimal
    _, verdict = promotion.promote(registry, MODEL, candidate)
    found = verdict.difference
    assert found is not None and found.low is not None and found.high is not None
    assert -MARGIN < found.low < found.diff < 0 < found.high
    assert registry.alias_version(MODEL, "champion") == candidate
    # Back to the old champion: +0.0016 but its lower bound (about -0.0015) is below a
    # margin of -0.001, so that move is refused.
    with pytest.raises(PromotionRefused, match="beyond the margin"):
        promotion.promote(registry, MODEL, champion or 0, margin=0.001)


def test_clearly_worse_is_refused_and_recorded(registry: Registry) -> None:
    champion = registry.alias_version(MODEL, "champion")
    candidate = planted(registry, WORSE)
    with pytest.raises(PromotionRefused, match=r"worse than the champion.*95% interval \[-0\.2"):
        promotion.promote(registry, MODEL, candidate, alias="challenger", actor="bo")
    assert registry.alias_version(MODEL, "champion") == champion
    assert registry.alias_version(MODEL, "challenger") is None
    refused = registry.history(MODEL)[-1]
    assert (refused.alias, refused.version, refused.outcome, refused.actor) == (
        "challenger",
        candidate,
        "refused",
        "bo",
    )
    assert "paired bootstrap" in refused.gate and "margin 0.0100" in refused.gate


def test_a_small_holdout_cannot_show_non_inferiority(settings: Settings) -> None:
    """120 customers, two models of the same strength: the difference is -0.0036, inside
    the margin, but the interval (about +-0.12) is far wider than it - refused."""
    registry = Registry(settings)
    rng = np.random.default_rng(6)
    labels = (rng.random(120) < 0.4).astype(int)
    keys = [f"S{i}" for i in range(120)]
    versions = []
    for scores in (1.5 * labels + rng.normal(0, 1, 120), 1.5 * labels + rng.normal(0, 1, 120)):
        values = HoldoutValues.auc("roc_auc", labels, scores, keys)
        auc = float(roc_auc_score(labels, scores))
        versions.append(register_churn(registry, MODEL, auc, per_row=values).version)
    promotion.promote(registry, MODEL, versions[0], force=True, reason="small holdout")
    with pytest.raises(PromotionRefused, match=r"diff -0\.0036 \(95% interval \[-0\.1"):
        promotion.promote(registry, MODEL, versions[1])


def test_values_of_other_rows_fall_back_to_the_logged_metrics(registry: Registry) -> None:
    candidate = planted(registry, EQUAL, keys=KEYS[::-1])  # same numbers, other customers
    _, verdict = promotion.promote(registry, MODEL, candidate)
    found = verdict.difference
    assert found is not None and found.method == "raw" and found.low is None
    assert "holdout rows differ" in found.fallback


# -- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("NBO_HOME", str(registry.settings.home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", registry.settings.tracking_uri)
    monkeypatch.setenv("NBO_ACTOR", "risk-officer")
    monkeypatch.setenv("NBO_PROMOTION_MARGIN", str(MARGIN))
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_compare_shows_the_gate_and_json_parses(
    registry: Registry, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = registry.alias_version(MODEL, "champion")
    candidate = planted(registry, EQUAL)
    text = cli.invoke(app, ["compare", MODEL, str(champion), str(candidate)])
    assert text.exit_code == 0, text.output
    assert f"gate, v{candidate} against v{champion}: roc_auc diff -0.0016" in text.output
    assert "margin 0.0100: non-inferior" in text.output

    raw = cli.invoke(app, ["compare", MODEL, str(champion), str(candidate), "--json"])
    assert raw.exit_code == 0, raw.output
    data = json.loads(raw.output)
    gate = data["gate"]
    assert (data["left"], data["right"], data["gate_problem"]) == (champion, candidate, None)
    assert gate["method"] == "paired bootstrap" and gate["non_inferior"] is True
    assert gate["rows"] == N and gate["resamples"] == 1000 and gate["margin"] == 0.01
    assert gate["low"] < gate["diff"] < gate["high"]
    expected = compare(registry, MODEL, champion or 0, candidate).gate
    assert expected is not None and gate["diff"] == expected.diff  # seeded: identical
    metric = next(r for r in data["rows"] if r["key"] == "roc_auc")
    assert metric["section"] == "metric" and metric["differs"] is True

    monkeypatch.setenv("NBO_PROMOTION_MARGIN", "0.001")
    get_settings.cache_clear()
    tight = json.loads(cli.invoke(app, ["compare", MODEL, "1", str(candidate), "--json"]).output)
    assert tight["gate"]["method"] == "raw"  # version 1 has no per-row values
    assert "version 1 has no per-row holdout values" in tight["gate"]["fallback"]
    other_data = json.loads(cli.invoke(app, ["compare", MODEL, "1", "4", "--json"]).output)
    assert other_data["gate"] is None and "evaluation data differs" in other_data["gate_problem"]

    monkeypatch.setenv("NBO_PROMOTION_MARGIN", "-1")
    get_settings.cache_clear()
    bad_margin = cli.invoke(app, ["compare", MODEL, "1", "2", "--json"])
    assert bad_margin.exit_code == 2 and "promotion_margin" in bad_margin.output
    monkeypatch.delenv("NBO_PROMOTION_MARGIN")
    get_settings.cache_clear()
    for args, named in (
        (["compare", MODEL, "1", "99", "--json"], "no version 99"),
        (["compare", "no-such-model", "1", "2", "--json"], "'no-such-model'"),
    ):
        bad = cli.invoke(app, args)
        assert bad.exit_code == 2 and named in bad.output and "Traceback" not in bad.output


def test_cli_refusal_exits_2_and_history_shows_it(registry: Registry, cli: CliRunner) -> None:
    candidate = planted(registry, WORSE)
    refused = cli.invoke(app, ["promote", MODEL, str(candidate), "--reason", "cheaper"])
    assert refused.exit_code == 2 and "worse than the champion" in refused.output
    history = cli.invoke(app, ["history", MODEL])
    assert history.exit_code == 0, history.output
    assert "promote (refused)" in history.output and "cheaper" in history.output
    promoted = cli.invoke(app, ["promote", MODEL, str(planted(registry, BETTER))])
    assert promoted.exit_code == 0, promoted.output
    assert "gate: roc_auc diff +0.1312" in promoted.output
