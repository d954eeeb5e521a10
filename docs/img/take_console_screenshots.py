"""Take the web console's screenshots of docs/console.md (a doc tool, not a test).

It serves an NBO home with ``nbo serve`` (a fresh API key with the ``audit`` scope, a 20%
control group), asks it for offers for the first customers of ``demo_customers.txt`` and
sends feedback events, then opens each console page in a headless Chromium (Playwright
driving the system's browser: no browser download) and saves it as a PNG 1200 px wide:

- ``console-login.png``: the login form;
- ``console-lookup.png``: the customer look-up form;
- ``console-customer.png``: a customer's profile, contact state and timeline;
- ``console-decision.png``: one decision with its offers' suitability and its exclusions;
- ``console-outcomes.png``: today's outcomes report with its plots;
- ``console-models.png``: the registered models, their champions and promotion history.

Run ``make demo`` (or ``nbo demo --no-serve``) first, then from the repository root::

    python docs/img/take_console_screenshots.py --home var

Needs ``pip install playwright`` and a Chromium at ``--browser`` (Debian: ``apt-get
install chromium``). The server is stopped at the end, also on failure. The decisions and
events it makes stay in the home's Redis, like any demo traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1200
CUSTOMERS = 40


@contextmanager
def service(home: Path, port: int, key_entry: dict[str, Any]) -> Iterator[str]:
    """``nbo serve`` on ``home`` in its own process group; yields its URL once it answers."""
    env = {
        **os.environ,
        "NBO_HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "NBO_ENVIRONMENT": "development",
        "NBO_API_KEYS": json.dumps([key_entry]),
        "NBO_CONTROL_SHARE": "0.2",
        "NBO_LOG_LEVEL": "warning",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise SystemExit(f"nbo serve exited with code {server.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the service did not get ready on {url} in 180 s") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _post(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "X-API-Key": key},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read() or b"{}")
        return result


def _event(url: str, key: str, customer: str, answer: dict[str, Any], kind: str, at: int) -> None:
    _post(
        f"{url}/v1/events",
        {
            "event_id": uuid.uuid4().hex,
            "type": kind,
            "customer_id": customer,
            "product_id": answer["offers"][at]["product_id"],
            "request_id": answer["request_id"],
            "channel": answer["channel"],
            "timestamp": datetime.now(UTC).isoformat(),
        },
        key,
    )


def traffic(url: str, key: str, customers: list[str]) -> tuple[str, str]:
    """Offers for ``customers`` on the app, events for some; the first customer shown two
    offers or more is asked again on two more channels and declines one offer. Returns
    that customer and the request id of their first decision."""
    featured: tuple[str, str] | None = None
    for number, customer in enumerate(customers):
        body = {"customer_id": customer, "channel": "app", "k": 3}
        answer = _post(f"{url}/v1/recommendations", body, key)
        if featured is None and len(answer["offers"]) >= 2:
            featured = (customer, answer["request_id"])
            _event(url, key, customer, answer, "shown", 0)
            _event(url, key, customer, answer, "declined", 1)
            for channel in ("email", "branch"):
                _post(f"{url}/v1/recommendations", {**body, "channel": channel}, key)
        elif answer["offers"] and number % 3 == 0:
            _event(url, key, customer, answer, "shown", 0)
            if number % 2 == 0:
                _event(url, key, customer, answer, "accepted", 0)
    if featured is None:
        raise SystemExit("no customer was shown two offers; is the demo trained?")
    return featured


def shoot(
    url: str, key: str, customer: str, request_id: str, out: Path, browser: str
) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    today = datetime.now(UTC).date().isoformat()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=browser)
        try:
            page = launched.new_page(viewport={"width": WIDTH, "height": 560})
            page.goto(f"{url}/console/login")
            saved.append(out / "console-login.png")
            page.screenshot(path=str(saved[-1]))
            page.fill("#api_key", key)
            page.click("button[type=submit]")
            saved.append(out / "console-lookup.png")
            page.screenshot(path=str(saved[-1]))
            page.fill("#customer_id", customer)
            page.click("form.inline button[type=submit]")
            page.set_viewport_size({"width": WIDTH, "height": 1400})
            saved.append(out / "console-customer.png")
            page.screenshot(path=str(saved[-1]))
            page.goto(f"{url}/console/decisions/{request_id}")
            saved.append(out / "console-decision.png")
            page.screenshot(path=str(saved[-1]))
            page.goto(f"{url}/console/outcomes?since={today}&until={today}&by=variant")
            page.set_viewport_size({"width": WIDTH, "height": 1250})
            saved.append(out / "console-outcomes.png")
            page.screenshot(path=str(saved[-1]))
            page.set_viewport_size({"width": WIDTH, "height": 900})
            page.goto(f"{url}/console/models")
            saved.append(out / "console-models.png")
            page.screenshot(path=str(saved[-1]))
        finally:
            launched.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("NBO_HOME", "var")))
    parser.add_argument("--port", type=int, default=8077)
    parser.add_argument("--browser", default="/usr/bin/chromium", help="Chromium binary")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    home = args.home.resolve()
    ids_file = home / "demo_customers.txt"
    if not ids_file.exists():
        raise SystemExit(f"{ids_file} not found: run `make demo` (or nbo demo) first")
    customers = [line for line in ids_file.read_text().split() if re.match(r"^[\w-]+$", line)]
    sys.path.insert(0, str(ROOT))
    from core.api_keys import hash_key, new_key

    key = new_key()
    entry = {
        "name": "screenshots",
        "sha256": hash_key(key),
        "scopes": ["recommend", "events", "audit"],
    }
    with service(home, args.port, entry) as url:
        customer, request_id = traffic(url, key, customers[:CUSTOMERS])
        for path in shoot(url, key, customer, request_id, args.out, args.browser):
            print(path)


if __name__ == "__main__":
    main()
