"""Requests in flight together on one worker: their reads share round trips to Redis
(``service.infra.coalesced_reads``), and each answer is the one its request gets alone."""

# ruff: noqa: F811 - fixtures imported from tests.support are parameters of the tests below

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import redis

from core.catalogue import Catalogue
from core.settings import Settings
from service.app import create_app
from tests.support.auth import AUTH
from tests.support.served import (  # noqa: F401 (fixtures)
    CUSTOMERS,
    champion_registry,
    publish_customers,
    served,
)

IDS = [*CUSTOMERS, "NOBODY-1", "NOBODY-2"]
"""Customers of four suitability profiles and two unknown ids (a degraded answer)."""


async def answers(settings: Settings, together: bool) -> tuple[dict[str, Any], int]:
    """Each id's answer, the requests sent all at once or one after another, and the
    round trips the app's reader made (as its metrics count them)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://nbo.test", headers=AUTH
        ) as client:

            async def ask(customer_id: str) -> tuple[str, Any]:
                body = {"customer_id": customer_id, "channel": "app", "k": 4}
                response = await client.post("/v1/recommendations", json=body)
                assert response.status_code == 200, response.text
                return customer_id, response.json()

            if together:
                got = await asyncio.gather(*(ask(customer_id) for customer_id in IDS))
            else:
                got = [await ask(customer_id) for customer_id in IDS]
        runtime = app.state.runtime
        exposition = runtime.metrics.render()[0].decode()
        trips = runtime.reader.batches_sent
        assert f"nbo_feature_reads_total {float(len(IDS))}" in exposition
        assert f"nbo_feature_read_round_trips_total {float(trips)}" in exposition
        return dict(got), trips


def decided(body: dict[str, Any]) -> dict[str, Any]:
    """What the decision is, without what names the request (its id)."""
    return {key: value for key, value in body.items() if key != "request_id"}


def test_requests_in_flight_together_share_reads_and_get_the_answers_they_get_alone(
    served: Settings, redis_client: redis.Redis, catalogue: Catalogue, key_prefix: str
) -> None:
    publish_customers(served, redis_client, catalogue)
    together, trips_together = asyncio.run(answers(served, together=True))
    # The same features, a contact state of its own: the earlier answers' impressions do
    # not count against these.
    alone_settings = served.model_copy(update={"contact_prefix": f"{key_prefix}:contact-alone"})
    alone, trips_alone = asyncio.run(answers(alone_settings, together=False))
    assert trips_alone == len(IDS)
    assert trips_together < len(IDS)
    assert {customer_id: decided(together[customer_id]) for customer_id in IDS} == {
        customer_id: decided(alone[customer_id]) for customer_id in IDS
    }
    assert together["C1-CAUTIOUS"]["offers"]  # answered from its own record, not another's
    assert together["NOBODY-1"]["degraded_reason"] == "unknown_customer"
