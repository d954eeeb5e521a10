"""The project on a real Redis Cluster: 3 masters started locally.

The cluster comes from ``tests.support.redis_cluster``.

``NBO_REDIS_URL=redis+cluster://...`` must give every client a ``RedisCluster``, and every
multi-key operation must stay in one slot: the request path's read script (feature record +
contact state: one round trip to ONE node), the audit writer's batch script, the event
scripts, materialization and pruning across nodes. Skipped, with the reason, only when the
machine has no redis-server binary; a cluster that fails to start fails the tests.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from fastapi.testclient import TestClient
from redis.cluster import RedisCluster, key_slot

from core.catalogue import Catalogue
from core.pseudonym import pseudonymiser
from core.redis_keys import contact_key, decision_index_key, decisions_key, events_key
from core.redis_server import ClusterUnreachableError, connect, make_client, parse_cluster_url
from core.settings import Settings
from core.tables import Tables
from features.audit_export import read_decision
from features.materialize import materialize
from features.online_store import FeatureSetInfo, OnlineStore
from features.streams import read_stream
from loadtests.redis_stats import command_calls as stats_calls
from service.app import create_app
from service.decision.contact_policy import ContactRead
from service.decision.outcome import DegradedReason
from service.infra.audit_writer import AuditWriter
from service.infra.breaker import BreakerOpenError
from service.infra.feature_fetch import fetch_features
from service.infra.redis_guard import (
    SERVICE_CONNECTION_NAME,
    GuardedAsyncClusterPipeline,
    GuardedAsyncRedisCluster,
    GuardedClusterPipeline,
    GuardedRedisCluster,
    connect_guarded,
    connect_guarded_async,
)
from tests.support.auth import AUTH, TEST_API_KEYS, TEST_PSEUDONYM_KEY
from tests.support.redis_cluster import LocalCluster, cluster_or_skip
from tests.support.redis_monitor import audit_held, client_names, monitored, sent_by
from tests.support.registry import empty_store
from tests.support.served import register_champions
from tests.support.tables import synthetic_tables

AS_OF = date(2025, 6, 30)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Skips only when there is no redis-server binary; any other start-up failure (a
    broken cluster client, a node that does not start) fails every test that needs it."""
    cluster = cluster_or_skip(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def on_cluster(redis_cluster: LocalCluster, tmp_path: Path) -> Settings:
    """Settings on the cluster with a key namespace of this test (no cleanup needed: the
    cluster is thrown away after the session)."""
    prefix = f"nbotest:{uuid.uuid4().hex[:12]}"
    return Settings(
        home=tmp_path / "home",
        redis_url=redis_cluster.url,
        mlflow_tracking_uri=empty_store(tmp_path / "mlflow.db"),
        feature_prefix=f"{prefix}:fs",
        contact_prefix=f"{prefix}:contact",
        events_prefix=f"{prefix}:events",
        audit_prefix=f"{prefix}:audit",
        feature_pointer_refresh_seconds=3600.0,  # no pointer reads during the measurements
        audit_flush_ms=1.0,
        api_keys=TEST_API_KEYS,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )


@pytest.fixture
def cluster_client(on_cluster: Settings) -> Iterator[RedisCluster]:
    client = connect(on_cluster)
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


@pytest.fixture(scope="module")
def bank(catalogue: Catalogue) -> Tables:
    return synthetic_tables([p.id for p in catalogue.holdable], customers=120, months=6, seed=5)


def node_of(client: RedisCluster, key: str) -> str:
    node = client.nodes_manager.get_node_from_slot(key_slot(key.encode()))
    return str(node.name)


def command_calls(nodes: dict[int, redis.Redis]) -> dict[int, dict[str, int]]:
    """``INFO commandstats`` calls per node (port -> command -> calls), through clients
    kept open (a new connection would add its own HELLO to the counts)."""
    calls: dict[int, dict[str, int]] = {}
    for port, node in nodes.items():
        stats = cast(dict[str, Any], node.info("commandstats"))
        calls[port] = {
            name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
        }
    return calls


# -- configuration --------------------------------------------------------------------------


def test_the_cluster_url_convention() -> None:
    first, others = parse_cluster_url("redis+cluster://u:p%40w@h1:7000,h2:7001,[::1]:7002/")
    assert first == "redis://u:p%40w@h1:7000/"
    assert others == [("h2", 7001), ("::1", 7002)]
    assert parse_cluster_url("rediss+cluster://h:6380?ssl_cert_reqs=none")[0] == (
        "rediss://h:6380?ssl_cert_reqs=none"
    )
    for bad in ("redis+cluster:///", "redis+cluster://h/", "redis+cluster://h:1/2"):
        with pytest.raises(ValueError):
            parse_cluster_url(bad)
    with pytest.raises(ValueError) as raised:
        Settings(redis_url="redis+cluster://user:secret@nohostport/")
    assert "secret" not in str(raised.value)  # a rejected URL is not echoed
    with pytest.raises(ValueError):
        Settings(contact_prefix="nbo:{contact}")
    assert Settings(redis_url="redis+cluster://h:7000/").redis_cluster
    assert not Settings(redis_url="redis://h:6379/0").redis_cluster


def test_every_client_of_a_cluster_url_is_a_cluster_client(
    on_cluster: Settings, redis_cluster: LocalCluster
) -> None:
    jobs = connect(on_cluster)
    assert isinstance(jobs, RedisCluster)
    assert {n.port for n in jobs.get_primaries()} == set(redis_cluster.ports)
    one_seed = make_client(f"redis+cluster://127.0.0.1:{redis_cluster.ports[-1]}/")
    assert isinstance(one_seed, RedisCluster) and len(one_seed.get_primaries()) == 3
    one_seed.close()

    service = connect_guarded(on_cluster)
    assert isinstance(service, GuardedRedisCluster)
    assert isinstance(service.pipeline(transaction=False), GuardedClusterPipeline)
    # The same (short) timeouts on every node connection.
    for node in service.get_nodes():
        assert node.redis_connection is not None
        kwargs = node.redis_connection.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == on_cluster.redis_request_timeout_ms / 1000
        assert kwargs["socket_connect_timeout"] == on_cluster.redis_request_timeout_ms / 1000
    assert service.ping()
    # The breaker guards the cluster client's commands and pipelines alike.
    for _ in range(on_cluster.redis_breaker_failures):
        with pytest.raises(redis.ConnectionError):
            service.breaker.call(_refuse)
    with pytest.raises(BreakerOpenError):
        service.get("k")
    pipe = service.pipeline(transaction=False)
    pipe.get("k")
    with pytest.raises(BreakerOpenError):
        pipe.execute()

    async def the_request_path_reader_is_refused_too() -> None:  # it shares the breaker
        reader = connect_guarded_async(on_cluster, service.breaker)
        assert isinstance(reader, GuardedAsyncRedisCluster)
        pipe = reader.pipeline(transaction=False)
        assert isinstance(pipe, GuardedAsyncClusterPipeline)
        pipe.get("k")
        with pytest.raises(BreakerOpenError):
            await pipe.execute()
        with pytest.raises(BreakerOpenError):
            await reader.get("k")
        await reader.aclose()

    asyncio.run(the_request_path_reader_is_refused_too())
    service.close()
    jobs.close()


def _refuse() -> None:
    raise redis.ConnectionError("refused")


def test_an_unreachable_cluster_is_a_redis_connection_error(
    on_cluster: Settings, redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    """redis-py reports "cluster cannot be connected" as RedisClusterException (not a
    RedisError); the project turns it into a ConnectionError: the CLI's one-line error, the
    breaker's count and the request path's degraded answer all apply."""
    dead = on_cluster.model_copy(update={"redis_url": "redis+cluster://127.0.0.1:1/"})
    with pytest.raises(ClusterUnreachableError):
        connect(dead)

    service = connect_guarded(on_cluster)
    store = OnlineStore.for_settings(service, on_cluster)
    info = FeatureSetInfo("v1", AS_OF, datetime.now(UTC), 1, ["age"], "t")
    cluster_client.set(store.record_key("v1", "C1"), b'{"age": 40}')
    contact = ContactRead(contact_key(on_cluster.contact_prefix, store.pseudonymise("C1")), 0.0)

    async def read_while_the_nodes_hang() -> None:  # the request path's asyncio client
        reader = connect_guarded_async(on_cluster, service.breaker)
        assert (await fetch_features(reader, store, info, "C1", contact=contact)).record == {
            "age": 40
        }
        for port in redis_cluster.ports:  # every node hangs for a second: no slot map either
            redis_cluster.node(port).execute_command("CLIENT", "PAUSE", 1000, "ALL")
        started = time.monotonic()
        lookup = await fetch_features(reader, store, info, "C1", contact=contact)
        assert lookup.problem is DegradedReason.FEATURE_STORE_UNAVAILABLE
        assert isinstance(lookup.redis_error, redis.ConnectionError | redis.TimeoutError)
        assert not lookup.contact.known
        await asyncio.sleep(max(0.0, 1.2 - (time.monotonic() - started)))
        assert (await fetch_features(reader, store, info, "C1", contact=contact)).record == {
            "age": 40
        }
        await reader.aclose()

    asyncio.run(read_while_the_nodes_hang())
    service.close()


# -- materialization ------------------------------------------------------------------------


def test_materialize_spreads_records_over_the_nodes_and_prunes_across_them(
    on_cluster: Settings, cluster_client: RedisCluster, bank: Tables, catalogue: Catalogue
) -> None:
    store = OnlineStore.for_settings(cluster_client, on_cluster)
    first = materialize(bank, AS_OF, catalogue, store, batch_size=50, keep_versions=1)
    records = list(cluster_client.scan_iter(match=f"{store.prefix}:v:{first.version}:c:*"))
    assert len(records) == first.customers
    nodes = {node_of(cluster_client, key.decode()) for key in records}
    assert len(nodes) == 3  # one customer per slot: the set is spread over every master

    second = materialize(bank, AS_OF, catalogue, store, batch_size=50, keep_versions=1)
    assert store.current() == second and store.versions() == [second.version]
    assert list(cluster_client.scan_iter(match=f"{store.prefix}:v:{first.version}:*")) == []


# -- the service ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def champions(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> str:
    return register_champions(tmp_path_factory.mktemp("cluster-registry"), catalogue)


def test_the_service_on_a_cluster(
    on_cluster: Settings,
    cluster_client: RedisCluster,
    redis_cluster: LocalCluster,
    bank: Tables,
    catalogue: Catalogue,
    champions: str,
) -> None:
    """Recommend (one round trip, one node), record the decision, take feedback, read back."""
    served = on_cluster.model_copy(update={"mlflow_tracking_uri": champions})
    store = OnlineStore.for_settings(cluster_client, served)
    info = materialize(bank, AS_OF, catalogue, store)
    customers = sorted(bank.customers["customer_id"])
    known = [c for c in customers if store.read(info.version, c) is not None][:6]
    assert len(known) == 6
    pseudonym = pseudonymiser(served)

    ask = {"channel": "app", "k": 3}
    nodes = {port: redis_cluster.node(port) for port in redis_cluster.ports}
    with TestClient(create_app(served), headers=AUTH) as app:
        assert app.get("/readyz").status_code == 200
        audit = app.app.state.runtime.audit  # type: ignore[attr-defined]
        for customer in known:  # warm-up: every node's pooled connection is opened
            app.post("/v1/recommendations", json={"customer_id": customer, **ask})
        assert audit.flush(timeout=60)
        for customer in known:
            contact = contact_key(served.contact_prefix, pseudonym(customer))
            record = store.record_key(info.version, customer)
            owner = node_of(cluster_client, contact)
            assert node_of(cluster_client, record) == owner

            with audit_held(audit):  # the decision's write comes later, checked below
                before = command_calls(nodes)
                answer = app.post("/v1/recommendations", json={"customer_id": customer, **ask})
                after = command_calls(nodes)
            body = answer.json()
            assert answer.status_code == 200, body
            assert body["degraded"] is False and body["offers"], body
            assert body["feature_set"]["version"] == info.version
            # Every command any node ran meanwhile, whatever it is: one EVAL of the read
            # script and the GET and the ZRANGEBYSCORE it runs, on the owner node; nothing
            # elsewhere. (``info``: the measurement's own INFO, once per node.)
            for port in redis_cluster.ports:
                delta = {
                    cmd: after[port].get(cmd, 0) - before[port].get(cmd, 0)
                    for cmd in after[port].keys() | before[port].keys()
                }
                delta = {cmd: n for cmd, n in delta.items() if n}
                assert delta.pop("info", 0) == 1, (port, delta)
                expected = (
                    {"eval": 1, "get": 1, "zrangebyscore": 1}
                    if f"127.0.0.1:{port}" == owner
                    else {}
                )
                assert delta == expected, (port, owner, delta)
        assert audit.flush(timeout=60)

        # ... in one round trip: the feature-fetch histogram counts round trips, and the
        # owner node runs the two reads inside the one EVAL the service sent.
        metrics = app.get("/metrics").text
        assert (  # each customer asked twice: warm-up, then measured
            f"nbo_feature_fetch_duration_seconds_count {float(2 * len(known))}" in metrics
        )
        customer = known[1]
        contact = contact_key(served.contact_prefix, pseudonym(customer))
        owner_port = int(node_of(cluster_client, contact).rsplit(":", 1)[1])
        names: dict[str, str] = {}

        def one_request() -> None:
            with audit_held(audit):
                app.post("/v1/recommendations", json={"customer_id": customer, **ask})
                names.update(client_names(redis_cluster.node(owner_port)))

        seen = monitored(redis_cluster.node(owner_port), one_request)
        sent = sent_by(seen, names, SERVICE_CONNECTION_NAME)
        assert [c["command"].split()[0] for c in sent] == ["EVAL"], sent
        assert audit.flush(timeout=60)
        reads = [c for c in seen if c["command"].split()[0] in ("EVAL", "GET", "ZRANGEBYSCORE")]
        assert [r["command"].split()[0] for r in reads] == ["EVAL", "GET", "ZRANGEBYSCORE"]
        assert [r["command"].split()[:2] for r in reads[1:]] == [
            ["GET", store.record_key(info.version, customer)],
            ["ZRANGEBYSCORE", contact],
        ]
        assert reads[0]["client_type"] == "tcp"
        assert [r["client_type"] for r in reads[1:]] == ["lua", "lua"]
        assert seen.index(reads[2]) == seen.index(reads[1]) + 1 == seen.index(reads[0]) + 2

        # The decision is recorded (audit batch script: one slot) and can be read back.
        customer = known[0]
        request_id = app.post(
            "/v1/recommendations", json={"customer_id": customer, "channel": "app", "k": 3}
        ).json()["request_id"]
        decision = app.get(f"/v1/decisions/{request_id}")
        assert decision.status_code == 200, decision.text
        assert decision.json()["customer"] == pseudonym(customer)
        assert customer not in decision.text

        # Feedback: stored once, read back from the stream, contact state updated.
        event = {
            "event_id": uuid.uuid4().hex,
            "type": "declined",
            "customer_id": customer,
            "product_id": decision.json()["offers"][0]["product_id"],
            "request_id": request_id,
            "channel": "app",
            "timestamp": datetime.now(UTC).isoformat(),
        }
        stored = app.post("/v1/events", json=event)
        assert stored.status_code == 202, stored.text
        assert stored.json()["status"] == "stored"
        again = app.post("/v1/events", json=event)
        assert again.json() == {**stored.json(), "status": "duplicate"}
        unknown = app.post("/v1/events", json={**event, "event_id": "e2", "request_id": "f" * 32})
        assert unknown.status_code == 422

        entries = list(read_stream(cluster_client, events_key(served.events_prefix)))
        assert [values[b"event_id"].decode() for _, values in entries] == [event["event_id"]]
        assert entries[0][1][b"customer"].decode() == pseudonym(customer)
        contact = contact_key(served.contact_prefix, pseudonym(customer))
        assert len(cluster_client.zrange(contact, 0, -1)) == 1  # the duplicate added nothing

        # The decline is obeyed at once by the next answer (same single-node read).
        declined = event["product_id"]
        next_body = app.post(
            "/v1/recommendations", json={"customer_id": customer, "channel": "app", "k": 3}
        ).json()
        assert declined not in [o["product_id"] for o in next_body["offers"]]


def test_the_audit_writer_batches_within_one_slot(
    on_cluster: Settings, cluster_client: RedisCluster
) -> None:
    writer = AuditWriter(cluster_client, on_cluster)
    ids = [uuid.uuid4().hex for _ in range(120)]
    for n, request_id in enumerate(ids):
        writer.submit(request_id, {"request_id": request_id, "n": n})
    assert writer.flush()
    slots = {key_slot(decision_index_key(on_cluster.audit_prefix, r).encode()) for r in ids}
    assert slots == {key_slot(decisions_key(on_cluster.audit_prefix).encode())}
    assert cluster_client.xlen(decisions_key(on_cluster.audit_prefix)) == 120
    found = read_decision(cluster_client, on_cluster, ids[77])
    assert found is not None and found["n"] == 77


def test_concurrent_duplicates_are_stored_once_on_a_cluster(
    on_cluster: Settings, cluster_client: RedisCluster
) -> None:
    from service.api.schemas import EventIn
    from service.infra.event_store import store_event

    request_id = uuid.uuid4().hex  # store_event stores what the route has checked
    event = EventIn(
        event_id="dup-1",
        type="shown",
        customer_id="C-123",
        product_id="credit_card",
        request_id=request_id,
        channel="app",
        timestamp=datetime.now(UTC),
    )
    results: list[str] = []

    def send() -> None:
        client = connect(on_cluster)
        results.append(
            store_event(
                client, on_cluster, event, pseudonymiser(on_cluster)("C-123"), datetime.now(UTC)
            ).status
        )
        client.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["duplicate"] * 5 + ["stored"]
    assert cluster_client.xlen(events_key(on_cluster.events_prefix)) == 1
    contact = contact_key(on_cluster.contact_prefix, pseudonymiser(on_cluster)("C-123"))
    assert [m.decode() for m in cluster_client.zrange(contact, 0, -1)] == [
        "s|credit_card|app|dup-1"
    ]
    marker = cluster_client.get(event_seen(on_cluster, "dup-1")).decode()
    assert re.fullmatch(r"\d+-\d+ [0-9a-f]{32}", marker)  # entry id, content fingerprint


def event_seen(settings: Settings, event_id: str) -> str:
    from core.redis_keys import event_seen_key

    return event_seen_key(settings.events_prefix, event_id)


def test_the_load_runner_counts_commands_over_every_node(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    """``--redis-stats`` on a cluster URL: one client, commands summed over the masters."""
    keys = [f"nbo-test-stats:{n}" for n in range(30)]  # spread over the slots
    before = stats_calls(cluster_client)
    for key in keys:
        cluster_client.get(key)
    after = stats_calls(cluster_client)
    assert after.get("get", 0) - before.get("get", 0) == len(keys)
    assert len({node_of(cluster_client, key) for key in keys}) == len(redis_cluster.ports)
