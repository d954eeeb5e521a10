"""``nbo``: one command line for the whole next-best-offer service.

Each group lives in its own module; this file only mounts them.
"""

from __future__ import annotations

import typer

from cli import (
    audit,
    data,
    demo,
    evaluate,
    events,
    features,
    keys,
    mlflow_ui,
    redis_cmd,
    registry,
    report,
    score,
    serve,
    simulate,
    train,
)
from loadtests import cli as loadtest_cli

app = typer.Typer(
    name="nbo",
    help=(
        "Next best offer for retail banks: data, features, training, registry and service.\n\n"
        "Example: nbo data generate --customers 20000 --months 12 --seed 7"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data", help="Import or generate the canonical tables.")
app.add_typer(features.app, name="features", help="Compute and materialize features.")
app.add_typer(train.app, name="train", help="Train models and register them in MLflow.")
app.add_typer(registry.app, name="registry", help="List and promote registered models.")
app.add_typer(mlflow_ui.app, name="mlflow", help="Open the MLflow UI on the project's registry.")
app.add_typer(evaluate.app, name="evaluate", help="Evaluate models on public data sets.")
app.add_typer(report.app, name="report", help="Reports: offer outcomes against control.")
app.add_typer(score.app, name="score", help="Batch scoring jobs (the retention list).")
app.add_typer(events.app, name="events", help="Export feedback events for retraining.")
app.add_typer(
    audit.app, name="audit", help="Export the decision audit trail; explain a customer's offers."
)
app.add_typer(keys.app, name="keys", help="Make API keys and their hashed NBO_API_KEYS entries.")
app.add_typer(
    redis_cmd.app,
    name="redis",
    help="Start, stop or inspect the embedded Redis of NBO_HOME; rename keys of the "
    "pre-Cluster layout.",
)
app.command(name="serve")(serve.serve)
app.command(name="demo")(demo.demo)
app.command(name="simulate")(simulate.simulate)
app.command(name="loadtest")(loadtest_cli.loadtest)

if __name__ == "__main__":
    app()
