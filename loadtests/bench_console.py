"""How long the web console's pages take for a customer with many decisions.

Plants ``--decisions`` decisions (default 1,000) for one customer through the service's
real request path (``POST /v1/recommendations`` in process: the real audit writer, so the
records are full-size and indexed per customer), plus a feedback event for every tenth,
then logs in to the console and times each page ``--repeats`` times: the customer page
(first, middle and last page of the timeline), one decision, the look-up form's redirect,
the models page and, when canonical tables exist, the outcomes page of today (as served:
its report reused from the last minute; its weekly plot; and with the report computed
afresh). Prints the median and the slowest time per page.

The customer's feature record is copied from the live feature set of ``NBO_HOME`` when
there is one (after ``make demo``), else a hand-made record is used. Everything goes to
throwaway Redis prefixes, deleted at the end; the registry is ``NBO_HOME``'s (read only).

A script that prints figures, not a test.

Example:
    NBO_HOME=var python -m loadtests.bench_console --decisions 1000 --repeats 20
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient

from core.api_keys import SCOPES, ApiKeyEntry, hash_key, new_key
from core.catalogue import load_catalogue
from core.pseudonym import pseudonymiser
from core.redis_server import RedisClient, connect
from core.settings import Environment, Settings, get_settings
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from service.app import create_app
from service.console import outcomes_view

CUSTOMER = "BENCH-CONSOLE-1"
BUDGET_MS = 300.0
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def sample_record(settings: Settings, client: RedisClient) -> dict[str, Any]:
    """A record of the live feature set (the first customer found), else a hand-made one."""
    store = OnlineStore.for_settings(client, settings)
    info = store.current()
    if info is not None:
        pattern = f"{store.keys.version_pattern(info.version)}"
        for key in client.scan_iter(match=pattern, count=500):
            if not key.endswith(b":meta"):
                raw = client.get(key)
                if isinstance(raw, bytes):
                    return OnlineStore.decode(raw, info)
    today = datetime.now(UTC).date()
    return {
        "age": 45,
        "risk_level": 3,
        "risk_assessed_on": (today - timedelta(days=200)).isoformat(),
        "resident": True,
        "income": 80_000.0,
        "balance": 120_000.0,
        "held": ["current_account", "savings_account"],
        "tier": "affluent",
        "lifecycle_stage": "mature",
        "segment": "individuals",
        "preferred_channel": "app",
        "months_since_login": 1,
        "maturities": [],
    }


def bench_settings(base: Settings, prefix: str, key: str) -> Settings:
    return base.model_copy(
        update={
            "feature_prefix": f"{prefix}:fs",
            "contact_prefix": f"{prefix}:contact",
            "events_prefix": f"{prefix}:events",
            "audit_prefix": f"{prefix}:audit",
            "console_prefix": f"{prefix}:console",
            "feature_pointer_refresh_seconds": 0.0,
            "environment": Environment.DEVELOPMENT,
            "api_keys": [ApiKeyEntry(name="bench", sha256=hash_key(key), scopes=SCOPES)],
            "contact_max_impressions": 1_000_000,
            "channel_daily_cap": 1_000_000,
            "log_level": "warning",
        }
    )


def publish(settings: Settings, client: RedisClient, record: dict[str, Any]) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    store = OnlineStore.for_settings(client, settings)
    created = datetime.now(UTC)
    as_of = date.today() - timedelta(days=1)
    info = FeatureSetInfo(
        version=make_version(as_of, created),
        as_of=as_of,
        created_at=created,
        customers=1,
        feature_names=sorted(record),
        catalogue_version=catalogue.version,
    )
    store.write_records(info.version, [(CUSTOMER, record)])
    store.publish(info)


def plant(client: TestClient, key: str, decisions: int) -> list[str]:
    """``decisions`` recommendations for the customer, an event for every tenth."""
    ids = []
    headers = {"X-API-Key": key}
    for number in range(decisions):
        answer = client.post(
            "/v1/recommendations",
            json={"customer_id": CUSTOMER, "channel": "app", "k": 3},
            headers=headers,
        ).json()
        ids.append(answer["request_id"])
        if number % 10 == 0 and answer["offers"]:
            client.post(
                "/v1/events",
                json={
                    "event_id": f"bench-{answer['request_id']}",
                    "type": "shown",
                    "customer_id": CUSTOMER,
                    "product_id": answer["offers"][0]["product_id"],
                    "request_id": answer["request_id"],
                    "channel": "app",
                    "timestamp": datetime.now(UTC).isoformat(),
                },
                headers=headers,
            )
        if (number + 1) % 200 == 0:
            print(f"  planted {number + 1} decisions", flush=True)
    return ids


def log_in(client: TestClient, key: str) -> str:
    form = client.get("/console/login")
    token = _TOKEN.search(form.text)
    assert token is not None
    answer = client.post(
        "/console/login",
        data={"api_key": key, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    found = _TOKEN.search(client.get("/console/customers").text)
    assert found is not None
    return found.group(1)


def timed(call: Callable[[], httpx.Response], repeats: int) -> tuple[list[float], int]:
    times, status = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        answer = call()
        times.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
    return times, status


def clean_up(client: RedisClient, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    base = get_settings()
    redis_client = connect(base)
    prefix = f"nbobench:console:{uuid.uuid4().hex[:8]}"
    key = new_key()
    settings = bench_settings(base, prefix, key)
    try:
        publish(settings, redis_client, sample_record(base, redis_client))
        with TestClient(create_app(settings)) as client:
            print(f"planting {args.decisions} decisions for one customer ...", flush=True)
            ids = plant(client, key, args.decisions)
            client.app.state.runtime.audit.flush()  # type: ignore[attr-defined]
            token = log_in(client, key)
            pseudonym = pseudonymiser(settings)(CUSTOMER)
            customer = f"/console/customers/{pseudonym}"
            last_page = -(-args.decisions // 20)
            pages: dict[str, Callable[[], httpx.Response]] = {
                "customer, timeline page 1": lambda: client.get(customer),
                f"customer, timeline page {last_page // 2}": lambda: client.get(
                    customer, params={"page": str(last_page // 2)}
                ),
                f"customer, timeline page {last_page}": lambda: client.get(
                    customer, params={"page": str(last_page)}
                ),
                "decision": lambda: client.get(f"/console/decisions/{ids[len(ids) // 2]}"),
                "look-up (POST, redirect)": lambda: client.post(
                    "/console/customers",
                    data={"customer_id": CUSTOMER, "csrf_token": token},
                    follow_redirects=False,
                ),
                "models": lambda: client.get("/console/models"),
            }
            if (settings.data_dir / "holdings.parquet").exists():
                today = datetime.now(UTC).date()
                window = {"since": (today - timedelta(days=1)).isoformat()}
                window["until"] = today.isoformat()
                pages["outcomes (today's decisions)"] = lambda: client.get(
                    "/console/outcomes", params=window
                )
                pages["outcomes, weekly plot"] = lambda: client.get(
                    "/console/outcomes/weekly.png", params=window
                )

                def fresh_outcomes() -> httpx.Response:
                    outcomes_view.reports = outcomes_view.ReportCache()  # nothing reused
                    return client.get("/console/outcomes", params=window)

                pages["outcomes, report computed"] = fresh_outcomes
            print(f"\n{'page':34} {'status':>6} {'median ms':>10} {'max ms':>8}")
            for name, call in pages.items():
                call()  # warm: first-use imports and caches are not the page's cost
                times, status = timed(call, args.repeats)
                print(f"{name:34} {status:>6} {statistics.median(times):>10.1f} {max(times):>8.1f}")
            print(f"\nbudget: {BUDGET_MS:.0f} ms per page; {args.repeats} timings each")
    finally:
        clean_up(redis_client, prefix)


if __name__ == "__main__":
    main()
