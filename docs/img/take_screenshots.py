"""Take the MLflow UI screenshots of docs/data-science.md (a doc tool, not a test).

It starts ``nbo mlflow ui`` on an NBO home, opens the pages of the champion version of a
model in a headless Chromium (Playwright driving the system's browser: no browser
download) and saves them as PNGs 1200 px wide:

- ``mlflow-run.png``: the run that trained the version (datasets, tags, metrics);
- ``mlflow-model-version.png``: the registered version with its schema (inputs, outputs);
- ``mlflow-logged-model.png``: the logged model, showing the version it is registered as;
- ``mlflow-compare-runs.png``: the champion's run beside the runs of the ``trials``
  experiment (skipped when there is none).

Prepare a home first (the guide's own commands), then run it from the repository root::

    export NBO_HOME=/tmp/dsg
    nbo data generate --customers 3000 --months 8 --seed 7
    nbo train churn --description "default config on the 3,000-customer bank"
    nbo registry promote nbo-churn 1 --reason "first version"
    nbo train churn --experiment trials --no-register --param c=0.05 \\
        --param max_train_snapshots=3 --run-name "churn C=0.05" --description "stronger L2"
    nbo train churn --experiment trials --no-register --param c=4.0 \\
        --run-name "churn C=4" --description "weaker L2"
    python docs/img/take_screenshots.py --home /tmp/dsg

Needs ``pip install playwright`` and a Chromium at ``--browser`` (Debian: ``apt-get
install chromium``). The server is stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1200
# Before the first page loads: the classic-ML sidebar (not the GenAI one), and the assistant
# counted as already shown once (it opens itself on a first visit).
_CLASSIC_UI = """
localStorage.setItem("mlflow.workflowType_v1", '"machine_learning"');
localStorage.setItem("mlflow.assistant.fab.autoOpenedOnFirstLoad_v1", "true");
"""

# Expanding the schema scrolls the page's inner panel; back to its top for the header.
_SCROLL_TO_TOP = "document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; })"


@contextmanager
def mlflow_ui(home: Path, port: int) -> Iterator[str]:
    """``nbo mlflow ui`` on ``home`` in its own process group; yields its URL once it answers."""
    env = {
        **os.environ,
        "NBO_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "mlflow", "ui", "--port", str(port)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit(f"nbo mlflow ui exited with code {server.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no MLflow UI on {url} after 180 s") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def champion(home: Path, model: str, compare_with: str) -> dict[str, str]:
    """Ids of the model's champion version (its run, experiment and logged model) and of
    the runs of the experiment ``compare_with`` (a data scientist's trials)."""
    os.environ["NBO_HOME"] = str(home)
    sys.path.insert(0, str(ROOT))
    from mlflow.tracking import MlflowClient

    from core.settings import Settings

    uri = Settings(home=home).tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(model, "champion")
    if not version.run_id:
        raise SystemExit(f"{model} version {version.version} has no run")
    run = client.get_run(version.run_id)
    # The version's logged model is its run's model output (the store may not return the
    # version's own model_id).
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise SystemExit(
            f"run {version.run_id} of {model} version {version.version} logged no model"
        )
    trials = client.get_experiment_by_name(compare_with)
    trial_runs = (
        [r.info.run_id for r in client.search_runs([trials.experiment_id], max_results=4)]
        if trials is not None
        else []
    )
    return {
        "model": model,
        "version": str(version.version),
        "run": version.run_id,
        "experiment": run.info.experiment_id,
        "logged_model": version.model_id or outputs[0].model_id,
        "trials_experiment": trials.experiment_id if trials is not None else "",
        "trial_runs": ",".join(trial_runs),
    }


def _settle(page: Any, text: str) -> None:
    """Wait for ``text`` on the page, then a little for the rest to render (the UI polls,
    so the network never goes quiet)."""
    page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2500)
    # The assistant panel would take a third of the width.
    close = page.get_by_label("Close", exact=True)
    if close.count() and close.first.is_visible():
        close.first.click()
        page.wait_for_timeout(1000)


def shoot(url: str, ids: dict[str, str], out: Path, browser_path: str) -> list[Path]:
    """Open the three pages and save one PNG each under ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to start as root with its sandbox (containers).
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1350})
            page.add_init_script(_CLASSIC_UI)

            page.goto(f"{url}/#/experiments/{ids['experiment']}/runs/{ids['run']}")
            _settle(page, "About this run")
            saved.append(out / "mlflow-run.png")
            page.screenshot(path=str(saved[-1]))

            # Tall enough for the header and every input and output of a churn model.
            page.set_viewport_size({"width": WIDTH, "height": 1820})
            page.goto(f"{url}/#/models/{ids['model']}/versions/{ids['version']}")
            _settle(page, "Schema")
            for part in ("Inputs (", "Outputs ("):
                page.get_by_text(part).first.click()
            _settle(page, "(required)")
            page.evaluate(_SCROLL_TO_TOP)
            page.wait_for_timeout(500)
            saved.append(out / "mlflow-model-version.png")
            page.screenshot(path=str(saved[-1]))

            page.set_viewport_size({"width": WIDTH, "height": 720})
            page.goto(f"{url}/#/experiments/{ids['experiment']}/models/{ids['logged_model']}")
            _settle(page, "Model versions")
            saved.append(out / "mlflow-logged-model.png")
            page.screenshot(path=str(saved[-1]))

            if ids["trial_runs"]:
                runs = json.dumps([ids["run"], *ids["trial_runs"].split(",")])
                experiments = json.dumps([ids["experiment"], ids["trials_experiment"]])
                page.set_viewport_size({"width": WIDTH, "height": 1000})
                page.goto(f"{url}/#/compare-runs?runs={runs}&experiments={experiments}")
                _settle(page, "Parallel Coordinates Plot")
                saved.append(out / "mlflow-compare-runs.png")
                page.screenshot(path=str(saved[-1]))
        finally:
            browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("NBO_HOME", "var")))
    parser.add_argument("--model", default="nbo-churn", help="registered model (its champion)")
    parser.add_argument(
        "--compare-with",
        default="trials",
        help="experiment whose runs the champion's is compared with",
    )
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--browser", default="/usr/bin/chromium")
    args = parser.parse_args()
    home = args.home.resolve()
    ids = champion(home, args.model, args.compare_with)
    with mlflow_ui(home, args.port) as url:
        for path in shoot(url, ids, args.out, args.browser):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
