"""Ad-hoc load with locust: ``locust -f loadtests/locustfile.py --host http://127.0.0.1:8000``.

Customer ids are read from ``NBO_LOAD_CUSTOMERS`` (a file with one id per line, e.g. written
by ``nbo demo``) so the load hits real feature records; 5% unknown ids exercise the
fallback path.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import HttpUser, between, task  # type: ignore[import-not-found]

CHANNELS = ("app", "push", "sms", "email", "advisor", "branch")


def _customer_ids() -> list[str]:
    path = os.environ.get("NBO_LOAD_CUSTOMERS")
    if path and Path(path).exists():
        ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        if ids:
            return ids
    return [f"C{n:07d}" for n in range(1, 1001)]


CUSTOMERS = _customer_ids()


class BankApp(HttpUser):
    """A bank app asking for offers on its home screen."""

    wait_time = between(0.0, 0.01)

    @task
    def recommend(self) -> None:
        customer = (
            random.choice(CUSTOMERS) if random.random() > 0.05 else f"unknown-{random.random()}"
        )
        self.client.post(
            "/v1/recommendations",
            json={"customer_id": customer, "channel": random.choice(CHANNELS), "k": 3},
            name="/v1/recommendations",
        )
