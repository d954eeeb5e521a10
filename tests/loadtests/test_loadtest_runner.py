"""The load runner (loadtests/): percentiles, bad input, and a real run against the baseline app.

No timing is asserted: only counts (requests sent, answered, degraded, Redis GETs), which
do not depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import gc
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from cli.main import app
from features.online_store import FeatureSetInfo, OnlineStore
from loadtests.baseline_process import baseline_server
from loadtests.driver import RequestMix, collector_frozen, drive, new_client
from loadtests.processes import service_processes
from loadtests.run import EXIT_BAD_INPUT, LoadOptions, median_round, run_load
from loadtests.stats import PhaseRecorder, PhaseSummary, meets_latency_goal, percentile, summarize
from tests.support.paths import free_port


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="outside 0-100"):
        percentile(values, 101)


def test_summary_counts_errors_and_rejects_unsustained_rates() -> None:
    recorder = PhaseRecorder()
    for ms in (1, 2, 3, 4):
        recorder.ok(ms / 1000, degraded=ms == 4)
    recorder.error("timeout")
    summary = summarize("service", 10.0, recorder, elapsed_seconds=1.0)
    assert (summary.sent, summary.succeeded, summary.error_count, summary.degraded) == (5, 4, 1, 1)
    assert summary.max_ms == pytest.approx(4.0)
    assert not meets_latency_goal(summary, 50.0)  # an error
    assert summary.to_json()["errors_by_kind"] == {"timeout": 1}


def test_request_mix_is_reproducible_with_a_share_of_unknown_ids() -> None:
    mix = RequestMix(["A", "B"], unknown_share=0.25, seed=3)
    bodies = mix.bodies(400)
    assert bodies == mix.bodies(400)
    unknown = sum(b"UNKNOWN" in b for b in bodies)
    assert 60 < unknown < 140  # about a quarter of 400


def loadtest(argv: list[str]) -> tuple[int, str]:
    """``nbo loadtest ARGV``: its exit code and what it printed on stderr."""
    result = CliRunner().invoke(app, ["loadtest", *argv])
    return result.exit_code, result.stderr


@pytest.fixture
def customers_file(tmp_path: Path) -> Path:
    path = tmp_path / "customers.txt"
    path.write_text("C0000001\nC0000002\n")
    return path


@pytest.mark.parametrize("rate", ["0", "-5", "1000000"])
def test_impossible_rate_exits_non_zero_with_a_message(rate: str, customers_file: Path) -> None:
    code, err = loadtest(["--rate", rate, "--customers", str(customers_file)])
    assert code == EXIT_BAD_INPUT
    assert "is impossible" in err


def test_dead_url_exits_non_zero_with_a_message(customers_file: Path) -> None:

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, err = loadtest(["--url", url, "--rate", "10", "--customers", str(customers_file)])
    assert code == EXIT_BAD_INPUT
    assert f"no service answers at {url}" in err


def test_more_connections_than_the_pool_is_refused(customers_file: Path) -> None:
    argv = ["--pool", "4", "--connections", "8", "--customers", str(customers_file)]
    code, err = loadtest(argv)
    assert code == EXIT_BAD_INPUT
    assert "--connections 8 must be within 1 and --pool (4)" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rounds", "3"], "it needs --baseline"),
        (["--rounds", "3", "--baseline", "--find-max"], "cannot be combined with --find-max"),
        (["--rounds", "0", "--baseline"], "--rounds 0 must be within 1 and 20"),
    ],
)
def test_rounds_need_the_baseline_and_a_sane_count(
    extra: list[str], message: str, customers_file: Path
) -> None:
    code, err = loadtest(["--customers", str(customers_file), *extra])
    assert code == EXIT_BAD_INPUT
    assert message in err


def test_the_median_round_judges_and_an_incomparable_round_counts_against() -> None:
    def budget(ratio: float | None, comparable: bool = True) -> dict[str, object]:
        return {"p99_ratio": ratio, "comparable": comparable}

    assert median_round([budget(1.7), budget(1.2), budget(1.4)]) == 2
    # Even count: the lower middle. The round with errors sorts last, as the worst.
    assert median_round([budget(1.7), budget(1.2), budget(0.9, comparable=False), budget(1.4)]) == 3
    assert median_round([budget(1.1, comparable=False), budget(1.3), budget(None)]) == 0
    assert median_round([budget(2.0)]) == 0


def test_no_process_is_looked_for_behind_a_remote_url() -> None:
    assert service_processes("http://203.0.113.7:8000") == []


def test_the_load_takes_turns_on_several_connections() -> None:
    """A server balances workers per connection, so the load must not ride on one.

    A real (minimal) HTTP/1.1 keep-alive server counts the connections it accepts: 40
    requests at a pace where each answer is back before the next request leaves would all
    reuse one connection from a single pool; spread over 4 clients they use 4 (more only
    if two requests of one client overlap).
    """

    async def scenario() -> tuple[int, PhaseSummary]:
        accepted = 0

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    await reader.readexactly(length)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    await writer.drain()
            except asyncio.IncompleteReadError:
                writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with new_client(pool_size=8, timeout_seconds=5.0, connections=4) as client:
            bodies = [b'{"customer_id": "C1"}'] * 40
            summary = await drive(
                client, f"http://127.0.0.1:{port}", 100.0, bodies, target="t", timeout_seconds=5.0
            )
        server.close()
        await server.wait_closed()
        return accepted, summary

    accepted, summary = asyncio.run(scenario())
    assert summary.succeeded == 40
    assert 4 <= accepted <= 8


def test_a_phase_runs_with_the_generators_own_objects_out_of_the_collectors_walk() -> None:
    """A full collection during a phase must not walk what existed before it (its pause
    would be charged to the target being measured); after the phase all is as before."""
    before_phase = [object()]
    gc.unfreeze()
    with collector_frozen():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert not any(o is before_phase for o in gc.get_objects())  # out of every generation
        during_phase = [object()]
        assert any(o is during_phase for o in gc.get_objects())  # collected normally
    assert gc.get_freeze_count() == 0
    assert any(o is before_phase for o in gc.get_objects())


def test_missing_customer_file_exits_non_zero(tmp_path: Path) -> None:
    code, err = loadtest(["--customers", str(tmp_path / "absent.txt")])
    assert code == EXIT_BAD_INPUT
    assert "cannot read customer ids" in err
    (tmp_path / "empty.txt").write_text("\n\n")
    assert loadtest(["--customers", str(tmp_path / "empty.txt")])[0] == EXIT_BAD_INPUT


def _live_feature_set(
    customers: list[str],
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A published feature set holding ``customers`` (the baseline app reads it) and the
    id file naming them."""
    prefix = f"{key_prefix}:fs"
    store = OnlineStore(redis_client, prefix)  # record keys hold pseudonyms (hash-tagged)
    for customer in customers:
        redis_client.set(store.record_key("v1", customer), b'{"age": 40}')
    now = datetime.now(UTC)
    store.publish(FeatureSetInfo("v1", now.date(), now, len(customers), ["age"], "test"))
    monkeypatch.setenv("NBO_FEATURE_PREFIX", prefix)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{c}\n" for c in customers))
    return ids


def test_run_against_the_baseline_app_counts_every_request(
    redis_url: str,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Open-loop run of 40 requests: each answered, unknown ids seen as degraded, one GET each."""
    ids = _live_feature_set(["C1", "C2"], redis_client, key_prefix, tmp_path, monkeypatch)

    with baseline_server(workers=1, redis_url=redis_url) as url:
        options = LoadOptions(
            url=url, rate=20, duration=2, customers=ids, unknown_share=0.3, warmup=0,
            timeout=30, redis_stats=True, redis_url=redis_url,
        )  # fmt: skip
        report = asyncio.run(run_load(options, progress=lambda _: None))

    summary = report["service"]["summary"]
    unknown = sum(b"UNKNOWN" in b for b in RequestMix(["C1", "C2"], 0.3, 7).bodies(40))
    assert summary["sent"] == 40
    assert summary["succeeded"] == 40 and summary["errors"] == 0
    assert summary["degraded"] == unknown  # the baseline answers found: false for them
    redis_report = report["service"]["redis"]
    assert redis_report["commands"]["get"] >= 40
    # Redis's own CPU in the phase: 40 GETs and whatever else shared the test server.
    assert redis_report["cpu_seconds"] >= 0
    assert redis_report["cpu_ms_per_request"] == pytest.approx(  # cpu_seconds: to the ms
        redis_report["cpu_seconds"] * 1000 / 40, abs=0.5 / 40
    )
    assert summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    # The target runs on this machine: the CPU its processes spent is measured too.
    cpu = report["service"]["server_cpu"]
    assert cpu["processes"] >= 1 and cpu["cpu_seconds"] > 0
    assert cpu["ms_per_request"] == pytest.approx(cpu["cpu_seconds"] * 1000 / 40, abs=1e-3)


@pytest.mark.slow  # 13 s (two rounds of two servers); pytest -m slow
def test_rounds_alternate_service_and_baseline_and_report_the_median(
    redis_url: str,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two rounds against a baseline app standing in for the service: every request of
    every round counted, and the budget is the median round's."""
    ids = _live_feature_set(["C1"], redis_client, key_prefix, tmp_path, monkeypatch)
    progress: list[str] = []

    with baseline_server(workers=1, redis_url=redis_url) as url:
        options = LoadOptions(
            url=url, rate=10, duration=1, customers=ids, unknown_share=0, warmup=0,
            timeout=30, redis_url=redis_url, baseline=True, workers=1, rounds=2,
        )  # fmt: skip
        report = asyncio.run(run_load(options, progress=progress.append))

    assert [m.split(":")[0] for m in progress] == ["round 1/2"] * 2 + ["round 2/2"] * 2
    assert len(report["rounds"]) == 2
    for one in report["rounds"]:
        assert one["service"]["sent"] == one["baseline"]["sent"] == 10
        assert one["service"]["errors"] == one["baseline"]["errors"] == 0
    budget = report["budget"]
    assert budget["rounds"] == 2 and len(budget["p99_ratios"]) == 2
    assert budget["p99_ratio"] == min(budget["p99_ratios"])  # the lower middle of two
    chosen = report["rounds"][budget["median_round"] - 1]
    assert report["service"]["summary"] == chosen["service"]
