"""``nbo evaluate``: measure models on public data sets (and the maturity model on a time
holdout of the data folder), the way the field scores them."""

from __future__ import annotations

import typer

from cli import evaluate_churn, evaluate_maturity, evaluate_recommender, evaluate_response

app = typer.Typer(no_args_is_help=True)
app.command(name="recommender")(evaluate_recommender.recommender)
app.command(name="churn")(evaluate_churn.churn)
app.command(name="maturity")(evaluate_maturity.maturity)
app.command(name="response")(evaluate_response.response)
