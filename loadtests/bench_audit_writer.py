"""What one decision costs the audit writer thread, by write-behind window.

The service's audit trail is written behind the answer (``service.infra.audit_writer``): one
writer thread per worker wakes for the first record of a batch, waits out
``NBO_AUDIT_FLUSH_MS`` for more, and appends the batch with one Lua call. This script
submits ``--records`` audit-sized records at ``--rate`` per second (the per-worker rate of
a load test: 100 requests/s on 2 workers is 50/s each) to a real writer on the
configured Redis, once per window in ``--windows``, and prints the writer thread's CPU
per record and per batch (``time.thread_time`` of that thread: exact, not sampled).

A script that prints figures, not a test. Every window runs in the same process, one
after the other; compare the rows of one run. The records go to a throwaway audit prefix
whose stream and index keys are deleted at the end.

Example:
    NBO_HOME=/tmp/ops python -m loadtests.bench_audit_writer --rate 50 --windows 5,25,50
"""

from __future__ import annotations

import argparse
import time
import uuid

from core.redis_keys import decisions_key
from core.redis_server import RedisClient, connect
from core.settings import Settings, get_settings
from service.infra.audit_writer import AuditWriter


class MeasuredWriter(AuditWriter):
    """An ``AuditWriter`` whose thread notes its own CPU time when it ends."""

    thread_cpu_seconds = 0.0

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            self.thread_cpu_seconds = time.thread_time()


def audit_sized_record(features: int = 120) -> dict[str, object]:
    """A record shaped like the service's (about 4 KB of JSON: the features dominate)."""
    return {
        "decided_at": "2026-12-01T20:00:00.000000+00:00",
        "customer": "p" * 32,
        "channel": "app",
        "features": {f"feature_{i:03d}": i * 0.137 for i in range(features)},
        "candidate_scores": {f"product_{i:02d}": 1.0 / (i + 2) for i in range(24)},
        "offers": [{"product_id": f"product_{i:02d}", "rank": i + 1} for i in range(3)],
    }


def measure(
    client: RedisClient, settings: Settings, window_ms: float, rate: float, records: int
) -> tuple[float, int]:
    """Writer-thread CPU seconds and batches for ``records`` submitted at ``rate``/s."""
    batches = 0

    def written(outcome: str, count: int) -> None:  # the writer's outcome hook: per batch
        nonlocal batches
        if outcome == "written":
            batches += 1

    window = settings.model_copy(update={"audit_flush_ms": window_ms})
    writer = MeasuredWriter(client, window, on_outcome=written)
    writer.start()
    record = audit_sized_record()
    started = time.perf_counter()
    for number in range(records):
        delay = started + number / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        writer.submit(f"bench-{window_ms:g}-{number}", record)
    writer.stop()
    return writer.thread_cpu_seconds, batches


def clean_up(client: RedisClient, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.delete(decisions_key(prefix))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Example: python -m loadtests.bench_audit_writer --rate 50 --windows 5,25,50",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="records/s (one worker's)")
    parser.add_argument("--records", type=int, default=500, help="records per window")
    parser.add_argument("--windows", default="5,25,50,100", help="flush windows, ms")
    args = parser.parse_args()
    if args.rate <= 0 or args.records <= 0:
        raise SystemExit("error: --rate and --records must be positive")
    try:
        windows = [float(w) for w in args.windows.split(",") if w.strip()]
    except ValueError:
        raise SystemExit(f"error: --windows {args.windows!r}: comma-separated numbers") from None
    prefix = f"nbo:bench-audit:{uuid.uuid4().hex[:8]}"
    settings = get_settings().model_copy(update={"audit_prefix": prefix})
    client = connect(settings)
    print(f"{args.records} records at {args.rate:g}/s per window")
    print("window_ms  batches  records/batch  writer_cpu_us/record  writer_cpu_us/batch")
    try:
        for window in windows:
            cpu, batches = measure(client, settings, window, args.rate, args.records)
            print(
                f"{window:9g}  {batches:7d}  {args.records / max(batches, 1):13.2f}"
                f"  {cpu / args.records * 1e6:20.0f}  {cpu / max(batches, 1) * 1e6:19.0f}"
            )
    finally:
        clean_up(client, prefix)


if __name__ == "__main__":
    main()
