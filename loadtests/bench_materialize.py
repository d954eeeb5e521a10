"""Materialization rate and Redis memory per customer, split by where the time goes.

Generates a synthetic bank of ``--customers`` into ``--home`` (once, with ``nbo data
generate`` in a child process, so its memory is not this process's), starts the embedded
Redis of that home on ``--port``, then in this process: reads the tables, computes the
features (``compute_features``), encodes the frame into compact records (timed alone, not
written), and writes them with ``OnlineStore.write_frame`` (encoding included) before
publishing. Prints customers/s, the split compute / encode / write (write = ``write_frame``
minus the encoding pass), Redis ``used_memory`` per customer (before and after the write,
key and Redis's own overhead included), the mean record and key length, and the peak RSS
of this process. ``--json`` also writes the same frame as JSON records (the format before
the compact records) and prints its rate and bytes per customer, for comparison in the same
run.

A script that prints figures, not a test: run it on a quiet machine and compare ratios of
one run. The Redis is the home's own (``NBO_EMBEDDED_REDIS_PORT``); it is stopped at the
end unless ``--keep-redis``.

Example:
    python -m loadtests.bench_materialize --customers 100000 --home /tmp/bench-home --port 17301
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.catalogue import load_catalogue
from core.embedded_redis import start_embedded_redis, stop_embedded_redis
from core.redis_server import make_client
from core.settings import PACKAGE_DIR, Settings
from core.tables import TablesMissingError, read_tables, table_layout
from features.online_store import FeatureSetInfo, OnlineStore, make_version
from features.pointintime import compute_features, to_records
from features.record_codec import encode_chunks, schema_for
from features.record_schema import RecordSchema

DECODE_SAMPLE = 2000
DECODE_REPEATS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, default=None, help="default: a new temp folder")
    parser.add_argument("--port", type=int, default=17301, help="the embedded Redis's port")
    parser.add_argument("--batch-size", type=int, default=5000, help="records per write batch")
    parser.add_argument("--json", action="store_true", help="also write JSON records")
    parser.add_argument("--keep-redis", action="store_true", help="leave the Redis running")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-materialize-"))
    data = home / "data"
    if not _has_tables(data):
        print(f"generating {args.customers:,} customers x {args.months} months into {data}")
        env = {**os.environ, "NBO_HOME": str(home)}
        generate = [sys.executable, "-m", "cli.main", "data", "generate"]
        generate += ["--customers", str(args.customers), "--months", str(args.months)]
        subprocess.run([*generate, "--seed", str(args.seed)], env=env, check=True)
    url = start_embedded_redis(args.port, home / "redis", persist=False)
    try:
        run(args, data, url)
    finally:
        if not args.keep_redis:
            stop_embedded_redis(args.port, home / "redis")


def _has_tables(data: Path) -> bool:
    """Whether ``data`` holds a table set, in either layout (then it is not generated again)."""
    try:
        table_layout(data)
    except TablesMissingError:
        return False
    return True


def run(args: argparse.Namespace, data: Path, url: str) -> None:
    settings = Settings(redis_url=url, feature_prefix="bench:fs")
    client = make_client(url, socket_timeout=30)
    store = OnlineStore.for_settings(client, settings)
    catalogue = load_catalogue(PACKAGE_DIR / "catalogue.yaml")
    print(f"load: {load()}")

    started = time.perf_counter()
    tables = read_tables(data)
    read_s = time.perf_counter() - started
    as_of = tables.holdings["month"].max().date()
    started, cpu = time.perf_counter(), time.process_time()
    frame = compute_features(tables, as_of, catalogue)
    compute_s, compute_cpu = time.perf_counter() - started, time.process_time() - cpu
    del tables
    n = len(frame)
    print(f"customers {n:,}, features {frame.shape[1]}, as of {as_of}")

    started, cpu = time.perf_counter(), time.process_time()
    schema = schema_for(frame)
    sizes = [len(r) for _, records in encode_chunks(schema, frame, 50_000) for r in records]
    encode_s, encode_cpu = time.perf_counter() - started, time.process_time() - cpu

    for version in store.versions():
        store.delete_version(version)
    client.execute_command("MEMORY", "PURGE")
    before = used_memory(client)
    created = datetime.now(UTC)
    info = FeatureSetInfo(
        version=make_version(as_of, created),
        as_of=as_of,
        created_at=created,
        customers=n,
        feature_names=[str(c) for c in frame.columns],
        catalogue_version=catalogue.version,
    )
    shown = Ticker(n)
    started, cpu = time.perf_counter(), time.process_time()
    written_with = store.write_frame(
        info.version, frame, shown, schema=schema, batch_size=args.batch_size
    )
    write_frame_s, write_frame_cpu = time.perf_counter() - started, time.process_time() - cpu
    shown.done()
    after = used_memory(client)
    store.publish(replace(info, record_schemas=(written_with,)))
    key = store.record_key(info.version, str(frame.index[0]))

    work = compute_s + write_frame_s
    print("phase          wall s  customers/s   this process's CPU s")
    print(f"read tables  {read_s:8.1f}               (not counted)")
    print(f"compute      {compute_s:8.1f} {n / compute_s:12,.0f}   {compute_cpu:8.1f}")
    print(f"encode       {encode_s:8.1f} {n / encode_s:12,.0f}   {encode_cpu:8.1f}")
    write_s, write_cpu = write_frame_s - encode_s, write_frame_cpu - encode_cpu
    print(f"write        {write_s:8.1f} {n / write_s:12,.0f}   {write_cpu:8.1f}  (keys, MSET)")
    print(
        f"write_frame  {write_frame_s:8.1f} {n / write_frame_s:12,.0f}   {write_frame_cpu:8.1f}"
        "  (encode + write)"
    )
    print(f"materialize  {work:8.1f} {n / work:12,.0f}   {compute_cpu + write_frame_cpu:8.1f}")
    print(
        f"redis memory {(after - before) / n:7.0f} bytes per customer "
        f"(used_memory {before / 2**20:.0f} -> {after / 2**20:.0f} MiB); "
        f"record {sum(sizes) / n:.0f} bytes on average, key {len(key)} bytes"
    )
    print(f"peak RSS     {peak_rss_mib():8.0f} MiB")
    decode_timing(client, store, info, written_with, frame)
    if args.json:
        json_baseline(store, client, frame, info.version + "-json", args.batch_size)
    print(f"load: {load()}")


def decode_timing(
    client: Any, store: OnlineStore, info: FeatureSetInfo, schema: RecordSchema, frame: Any
) -> None:
    """Mean time to decode one stored record, beside ``orjson.loads`` of its JSON form."""
    published = replace(info, record_schemas=(schema,))
    sample = frame.iloc[:: max(1, len(frame) // DECODE_SAMPLE)].head(DECODE_SAMPLE)
    raws = client.mget([store.record_key(info.version, str(c)) for c in sample.index])
    jsons = [orjson.dumps(record) for _, record in to_records(sample)]
    published.decode(raws[0])  # compiles the schema once, as the service's first request does
    compact_us = _mean_us(published.decode, raws)
    json_us = _mean_us(orjson.loads, jsons)
    print(
        f"decode       {compact_us:8.1f} us per record (orjson.loads of the JSON form: "
        f"{json_us:.1f} us), mean over {len(raws):,} records x {DECODE_REPEATS}"
    )


def _mean_us(decode: Any, raws: list[bytes]) -> float:
    started = time.perf_counter()
    for _ in range(DECODE_REPEATS):
        for raw in raws:
            decode(raw)
    return (time.perf_counter() - started) / (DECODE_REPEATS * len(raws)) * 1e6


def json_baseline(
    store: OnlineStore, client: object, frame: object, version: str, batch_size: int
) -> None:
    """The same frame as JSON records (one ``SET`` each, pipelined): rate and memory."""
    before = used_memory(client)
    started = time.perf_counter()
    written = store.write_records(version, to_records(frame), batch_size)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    after = used_memory(client)
    print(
        f"JSON records {seconds:8.1f} {written / seconds:12,.0f}   (wall s, customers/s), "
        f"{(after - before) / written:.0f} bytes per customer"
    )
    store.delete_version(version)


class Ticker:
    """Progress of the write: a line every tenth of the customers."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.next = total / 10

    def __call__(self, written: int) -> None:
        if written >= self.next:
            print(f"  written {written:,} / {self.total:,}", flush=True)
            self.next += self.total / 10

    def done(self) -> None:
        pass


def used_memory(client: object) -> int:
    return int(client.info("memory")["used_memory"])  # type: ignore[attr-defined]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
