"""Hot reload, challenger traffic and shadow mode on a real registry and a real Redis.

Recommender version 1 ranks products by rising popularity (the catalogue read backwards),
version 2 by falling popularity (the catalogue read forwards), so every response's offers
tell which version produced them - independently of the ``model_versions`` it names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from core.catalogue import Catalogue
from core.redis_keys import decisions_key
from core.settings import Settings
from registry.client import Registry
from service.app import create_app
from service.decision.variant import Variant, assign_variant
from tests.support.auth import AUTH
from tests.support.lifecycle import CHURN, REC, lifecycle_settings, publish_full
from tests.support.served import ask, record

pytestmark = pytest.mark.integration


@pytest.fixture
def lifecycle(settings: Settings, tmp_path: Path) -> Settings:
    return lifecycle_settings(settings, tmp_path)


@pytest.fixture
def app_client(
    lifecycle: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> Iterator[tuple[TestClient, Registry]]:
    publish_full(lifecycle, redis_client, catalogue)
    with TestClient(create_app(lifecycle), headers=AUTH) as client:
        yield client, Registry(lifecycle)


def reload(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.post("/admin/reload")
    assert response.status_code == 200, response.text
    return {r["slot"]: r for r in response.json()["results"]}


def offers(body: dict[str, Any]) -> list[str]:
    return [o["product_id"] for o in body["offers"]]


def test_promotion_under_concurrent_requests_never_mixes_versions(
    app_client: tuple[TestClient, Registry],
) -> None:
    client, registry = app_client
    v1 = ask(client)
    assert v1["model_versions"] == {REC: "1", CHURN: "1"}
    expected = {"1": offers(v1)}
    errors: list[str] = []
    seen: list[tuple[str, list[str]]] = []
    swapped = threading.Event()
    after_swap = [0]

    def hammer() -> None:
        # Runs until 40 responses named version 2 after the swap (a count, not a time).
        while after_swap[0] < 40:
            response = client.post(
                "/v1/recommendations", json={"customer_id": "C5-RICH", "channel": "app"}
            )
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text}")
                return
            body = response.json()
            seen.append((body["model_versions"][REC], offers(body)))
            if swapped.is_set() and body["model_versions"][REC] == "2":
                after_swap[0] += 1
            if len(seen) > 5000:
                errors.append("version 2 never served")
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    registry.promote(REC, 2, reason="hot reload test")
    result = reload(client)
    swapped.set()
    for thread in threads:
        thread.join(120)
    assert result["recommender"]["outcome"] == "swapped"
    assert result["recommender"]["version"] == 2
    assert errors == []
    expected["2"] = offers(ask(client))
    assert expected["1"] != expected["2"]
    assert {v for v, _ in seen} <= {"1", "2"}
    # Each response's offers are exactly those of the version it names: never a mix.
    assert all(got == expected[version] for version, got in seen)
    assert all(ask(client)["model_versions"] == {REC: "2", CHURN: "1"} for _ in range(3))
    metrics = client.get("/metrics").text
    assert 'nbo_model_reloads_total{model="nbo-recommender",outcome="swapped"} 1.0' in metrics


@pytest.mark.parametrize(
    ("version", "problem"),
    [(3, "input features not in the live feature set: secret_score"), (4, "corrupt")],
)
def test_failing_version_is_refused_counted_and_old_keeps_serving(
    app_client: tuple[TestClient, Registry], version: int, problem: str
) -> None:
    client, registry = app_client
    registry.promote(REC, version, reason="bad candidate")
    result = reload(client)["recommender"]
    assert (result["outcome"], result["version"]) == ("refused", version)
    assert problem in result["detail"]
    body = ask(client)
    assert body["model_versions"][REC] == "1" and body["degraded"] is False
    metrics = client.get("/metrics").text
    assert 'nbo_model_reloads_total{model="nbo-recommender",outcome="refused"} 1.0' in metrics
    assert 'nbo_model_source{model="nbo-recommender",source="registry"} 1.0' in metrics


def test_variant_assignment_is_stable_and_follows_the_share() -> None:
    ids = [f"C{i:06d}" for i in range(4000)]
    first = [assign_variant(c, 0.25) for c in ids]
    assert first == [assign_variant(c, 0.25) for c in ids]
    share = first.count(Variant.CHALLENGER) / len(ids)
    assert 0.22 < share < 0.28
    assert all(assign_variant(c, 0.0) is Variant.CHAMPION for c in ids)
    assert all(assign_variant(c, 1.0) is Variant.CHALLENGER for c in ids)
    # Raising the share only moves customers to the challenger.
    assert all(
        assign_variant(c, 0.5) is Variant.CHALLENGER
        for c, v in zip(ids, first, strict=True)
        if v is Variant.CHALLENGER
    )


def test_challenger_share_and_shadow_mode(
    lifecycle: Settings, redis_client: redis.Redis, catalogue: Catalogue
) -> None:
    registry = Registry(lifecycle)
    registry.promote(REC, 2, alias="challenger", reason="A/B")
    share = lifecycle.model_copy(update={"challenger_share": 0.5, "shadow_mode": True})
    customers = {f"AB-{i}": record() for i in range(8)}
    groups = {c: assign_variant(c, 0.5) for c in customers}
    assert set(groups.values()) == set(Variant), "fixture ids should fall in both groups"
    publish_full(share, redis_client, catalogue, customers)
    with TestClient(create_app(share), headers=AUTH) as client:
        bodies = {c: ask(client, c) for c in customers}
        again = {c: ask(client, c)["variant"] for c in customers}
        metrics = client.get("/metrics").text
    for customer, body in bodies.items():
        assert body["variant"] == again[customer] == groups[customer].value
        assert body["model_versions"] == {
            REC: "2" if groups[customer] is Variant.CHALLENGER else "1",
            CHURN: "1",
        }
    for variant in Variant:
        count = 2.0 * sum(v is variant for v in groups.values())  # every customer asked twice
        line = f'nbo_recommendations_total{{degraded="false",variant="{variant.value}"}} {count}'
        assert line in metrics
    # Shadow: a champion customer's audit record carries the challenger's offers, unshown.
    key = decisions_key(share.audit_prefix)
    records = [orjson.loads(entry[b"d"]) for _, entry in redis_client.xrange(key)]
    assert len(records) == 2 * len(customers)
    for rec in records:
        if rec["variant"] == "challenger":
            assert rec["shadow"] is None
            continue
        shadow = rec["shadow"]
        assert (shadow["model"], shadow["version"]) == (REC, "2")
        shown = [o["product_id"] for o in rec["offers"]]
        assert shadow["offers"] and [o["product_id"] for o in shadow["offers"]] != shown
