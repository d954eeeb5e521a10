"""The wrk driver (loadtests/wrk.py): the generated Lua script, the parsing of its result
line, and one short real run against the baseline app when wrk is installed.

No timing is asserted: counts only, and the fixed-rate schedule's ceiling (a closed loop
would send thousands of requests in the same time).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from features.online_store import FeatureSetInfo, OnlineStore
from loadtests import measure as measure_module
from loadtests.baseline_process import baseline_server
from loadtests.driver import RECOMMENDATIONS_PATH, RequestMix
from loadtests.run import LoadInputError, LoadOptions, run_load
from loadtests.stats import PhaseSummary
from loadtests.wrk import MARKER, WrkError, parse_wrk_output, run_wrk, wrk_path, wrk_script

RESULT = {
    "requests": 1200,
    "duration_us": 2_000_000,
    "errors": {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 2},
    "latency_ms": {"p50": 1.5, "p90": 3.0, "p95": 4.0, "p99": 9.5, "p99.9": 20.0, "max": 31.0},
    "late": 4,
    "lag_max_ms": 2.5,
    "degraded": 7,
}


def wrk_output(result: dict[str, object]) -> str:
    """What wrk prints: its own text, then the script's result line."""
    return (
        "Running 2s test @ http://127.0.0.1:9/v1/recommendations\n"
        "  2 threads and 8 connections\n"
        "Requests/sec:    600.00\n"
        f"{MARKER}{json.dumps(result)}\n"
    )


def test_the_result_line_is_parsed_into_counts_and_percentiles() -> None:
    result = parse_wrk_output(wrk_output(RESULT))
    assert result.requests == 1200 and result.duration_seconds == 2.0
    assert result.rate == 600.0
    assert result.errors["status"] == 3 and result.late == 4

    summary = result.summary("service", offered_rate=None)  # closed loop
    assert summary.succeeded == 1200 - 3 - 2  # non-2xx and timeouts are not successes
    assert summary.error_count == 1 + 3 + 2
    assert summary.offered_rate == summary.achieved_rate == pytest.approx(1195 / 2)
    assert (summary.p50_ms, summary.p99_ms, summary.max_ms) == (1.5, 9.5, 31.0)
    assert result.summary("service", offered_rate=700.0).offered_rate == 700.0
    assert summary.degraded == 7


def test_a_missing_or_broken_result_line_names_the_output() -> None:
    with pytest.raises(WrkError, match=r"(?s)no result line.*Requests/sec"):
        parse_wrk_output("Running 2s test\nRequests/sec: 1.0\n")
    with pytest.raises(WrkError, match="unreadable wrk result line"):
        parse_wrk_output(MARKER + '{"requests": 1}\n')


def test_the_script_holds_every_body_escaped_and_the_schedule_only_at_a_fixed_rate() -> None:
    bodies = [b'{"customer_id": "C1", "k": 3}', b'{"customer_id": "a\\"b\xc3\xa9"}']
    closed = wrk_script(bodies, path="/v1/recommendations", api_key="nbo_key")
    assert r'"{\034customer_id\034: \034C1\034, \034k\034: 3}"' in closed
    assert r"a\092\034b\195\169" in closed  # backslash, quote and UTF-8 bytes kept exactly
    assert '"X-API-Key"' in closed and '"nbo_key"' in closed
    assert "local interval_ms = nil" in closed
    fixed = wrk_script(bodies, path="/v1/recommendations", rate=500.0, threads=2)
    assert "local interval_ms = 4.0" in fixed  # 2 threads x 1000 ms / 500 per s
    assert "X-API-Key" not in fixed
    with pytest.raises(ValueError, match="at least one"):
        wrk_script([], path="/")
    with pytest.raises(ValueError, match="above 0"):
        wrk_script(bodies, path="/", rate=0.0)


def test_an_unknown_generator_is_refused(tmp_path: Path) -> None:
    options = LoadOptions(
        url="http://127.0.0.1:9", rate=10, duration=1, customers=tmp_path, generator="ab"
    )
    with pytest.raises(LoadInputError, match="--generator 'ab'"):
        options.validate()


def _live_feature_set(
    customers: list[str], client: redis.Redis, prefix: str, tmp_path: Path
) -> Path:
    """A published feature set holding ``customers`` and the id file naming them."""
    store = OnlineStore(client, prefix)
    for customer in customers:
        client.set(store.record_key("v1", customer), b'{"age": 40}')
    now = datetime.now(UTC)
    store.publish(FeatureSetInfo("v1", now.date(), now, len(customers), ["age"], "test"))
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{c}\n" for c in customers))
    return ids


@pytest.mark.skipif(wrk_path() is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_drives_the_baseline_app_closed_loop_and_at_a_fixed_rate(
    redis_url: str,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two 2-second runs: closed loop (every request answered, one GET each, wrk's CPU
    read), then at 50/s through the runner (the schedule caps what is sent)."""
    monkeypatch.setenv("NBO_FEATURE_PREFIX", f"{key_prefix}:fs")
    ids = _live_feature_set(["C1", "C2"], redis_client, f"{key_prefix}:fs", tmp_path)
    store = OnlineStore(redis_client, f"{key_prefix}:fs")
    bodies = [*RequestMix(["C1", "C2"], unknown_share=0.0).bodies(3), b'{"customer_id": "NOPE"}']
    gets_before = int(redis_client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))

    with baseline_server(workers=1, redis_url=redis_url) as url:
        closed = run_wrk(url, bodies, path=RECOMMENDATIONS_PATH, duration=2, connections=2)
        options = LoadOptions(
            url=url, rate=50, duration=2, customers=ids, unknown_share=0.0, warmup=0,
            timeout=5, redis_url=redis_url, generator="wrk",
        )  # fmt: skip
        report = asyncio.run(run_load(options, progress=lambda _: None))

    assert closed.requests > 0 and not any(closed.errors.values())
    assert closed.cpu_seconds > 0  # wrk's own CPU, read from the reaped process
    assert 0 < closed.degraded < closed.requests  # the unknown id's answers, read by the script
    gets = int(redis_client.info("commandstats")["cmdstat_get"]["calls"]) - gets_before
    assert gets >= closed.requests  # every answered request read its record
    assert store.current() is not None

    summary = report["service"]["summary"]
    assert summary["errors"] == 0 and summary["succeeded"] > 0
    assert summary["degraded"] == 0  # every id is known
    assert summary["sent"] <= 2 * 50 * 1.5  # the fixed-rate schedule, not a closed loop
    assert report["config"]["generator"] == "wrk"
    assert report["service"]["client"]["generator"] == "wrk"
    assert report["service"]["client"]["cpu_seconds"] > 0


def _summary(rate: float, p99_ms: float) -> PhaseSummary:
    return PhaseSummary(
        target="service", offered_rate=rate, duration_seconds=8.0, sent=int(rate * 8),
        succeeded=int(rate * 8), errors={}, degraded=0, p50_ms=1.0, p95_ms=p99_ms / 2,
        p99_ms=p99_ms, max_ms=p99_ms, achieved_rate=rate, client_lag_p99_ms=0.0,
    )  # fmt: skip


def test_the_wrk_ceiling_is_the_best_passing_step_and_a_miss_gets_a_second_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Closed-loop steps (rate, p99) by connection count: 1, 2 and 4 pass (4 slower than 2),
    8 misses the p99 goal twice -> the ceiling is the best passing rate (2 connections,
    not the last passing one) and 16 never runs."""
    outcomes = {1: [(300.0, 5.0)], 2: [(500.0, 9.0)], 4: [(480.0, 30.0)],
                8: [(700.0, 80.0), (690.0, 75.0)]}  # fmt: skip
    calls: list[int] = []

    async def fake_measure(*args: object, connections: int | None = None, **kwargs: object):
        assert connections is not None and args[2] is None  # closed loop: no rate
        calls.append(connections)
        rate, p99 = outcomes[connections].pop(0)
        return measure_module.Measured(_summary(rate, p99), {"connections": connections})

    async def no_drain(url: str) -> None:
        return None

    monkeypatch.setattr(measure_module, "measure", fake_measure)
    monkeypatch.setattr(measure_module, "drain", no_drain)
    options = LoadOptions(
        url="http://192.0.2.1:9", rate=100, duration=1, customers=tmp_path, generator="wrk"
    )
    result = asyncio.run(
        measure_module._find_max_wrk(options.url, "service", options, RequestMix(["C1"]))
    )
    assert calls == [1, 2, 4, 8, 8]
    assert result["max_rate"] == 500.0
    assert [s["meets_goal"] for s in result["steps"]] == [True, True, True, False, False]
    assert result["steps"][-1]["confirmation"] is True
