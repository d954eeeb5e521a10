"""The artifacts a recommender training run logs: feature importances (table and plot, and
the pair ranker's), the per-product precision table and plot, the feature names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from training.importance_plots import TOP, gain_plot

if TYPE_CHECKING:
    from training.recommender import Evaluation, FittedRecommender


def write_artifacts(
    fitted: FittedRecommender, evaluation: Evaluation, folder: Path
) -> dict[str, Path]:
    """Feature importances with their plot (and the pair ranker's), the per-product
    precision table and its plot, feature names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {
        "feature_importances": folder / "feature_importances.csv",
        "feature_importances_plot": folder / "feature_importances.png",
        "per_product_precision": folder / "per_product_precision.csv",
        "per_product_precision_plot": folder / "per_product_precision.png",
        "feature_names": folder / "feature_names.json",
    }
    fitted.importances.rename("split_gain").to_csv(
        paths["feature_importances"], index_label="input"
    )
    gain_plot(
        fitted.importances,
        paths["feature_importances_plot"],
        f"Recommender: top {TOP} inputs by split gain",
    )
    table = evaluation.per_product
    table.to_csv(paths["per_product_precision"])
    fig, ax = plt.subplots(figsize=(8, 6))
    ordered = table.sort_values("recommended")
    ax.barh(ordered.index, ordered["precision"], color="#3b6ea5")
    ax.set_xlabel(f"precision of top-{evaluation.ranking.shape[1]} recommendations (holdout)")
    ax.set_title("Per-product precision")
    fig.tight_layout()
    fig.savefig(paths["per_product_precision_plot"], dpi=100)
    plt.close(fig)
    paths["feature_names"].write_text(json.dumps(fitted.scorer.feature_names, indent=1))
    if fitted.pair_importances is not None:
        paths["pair_feature_importances"] = folder / "pair_feature_importances.csv"
        fitted.pair_importances.rename("split_gain").to_csv(
            paths["pair_feature_importances"], index_label="input"
        )
    return paths
