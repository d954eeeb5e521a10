"""Write-behind of the decision audit trail: off the request path, one round trip per batch.

Why not write each decision before answering: that is a second Redis round trip on every
recommendation, and the latency budget allows exactly one - the read of the customer's
features and contact state. So the request thread only serializes its record and hands
it over (:meth:`AuditWriter.submit`, no I/O); one writer thread per process collects
what arrives within ``NBO_AUDIT_FLUSH_MS`` and appends the whole batch with ONE Lua
script call (stream entries + request-id index keys + each customer's index, all or
nothing per batch).

What this trades, stated plainly:

* A decision becomes findable by request id up to one flush window (plus a round trip)
  after its answer. ``POST /v1/events`` waits out that window once before calling a
  request id unknown (``service.infra.event_store``), so feedback sent right after an answer works.
* Decisions still queued when a process is killed (SIGKILL, OOM) are lost: at most one
  window's worth. A normal shutdown flushes the queue (:meth:`AuditWriter.stop`).
* While Redis is unreachable a batch is retried on the next window; the queue is bounded
  (``NBO_AUDIT_QUEUE_MAX``): beyond it new decisions are dropped and counted
  (``nbo_audit_records_total{outcome="dropped"}``), never blocking an answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import orjson
import redis

from core.redis_keys import (
    CUSTOMER_INDEX_MAX,
    audit_schema_key,
    customer_decisions_key,
    decision_index_key,
    decisions_key,
)
from core.redis_server import RedisClient
from core.settings import Settings
from features.audit_features import schema_json
from features.record_schema import RecordSchema
from service.infra.log import fields

log = logging.getLogger(__name__)

# KEYS: the stream, then per record its request-id index key and its customer's index key,
# then the key of each feature-record schema the batch brings (features.audit_features).
# ARGV: max stream length, index TTL, max entries of a customer index, the number of
# schemas, then one serialized record per record in the same order, then each schema's
# JSON. A schema is set (never expiring, NX: content-addressed) in the same call as the
# first records that need it, so no decision is ever stored without its schema. Every key
# carries the stream's hash tag ({decisions}, features.streams), so on a Redis Cluster the
# whole batch is one slot: one call to one node, whatever the request ids and customers.
# The customer index (a sorted set of entry ids scored by core.redis_keys.index_score) is
# what lets the console page through one customer's decisions without scanning the
# stream; ids of entries trimmed since are skipped on read. Each customer index the batch
# touched is capped and its TTL renewed once, after all the batch's entries are added (the
# same end state as after each entry; two calls fewer per repeated customer).
_APPEND_BATCH = """
local schemas = tonumber(ARGV[4])
local records = (#KEYS - 1 - schemas) / 2
for i = 1, schemas do
  redis.call('SET', KEYS[#KEYS - schemas + i], ARGV[#ARGV - schemas + i], 'NX')
end
local stream, cap, ttl = KEYS[1], ARGV[1], ARGV[2]
local customers, seen = {}, {}
for i = 1, records do
  local entry = redis.call('XADD', stream, 'MAXLEN', '~', cap, '*', 'd', ARGV[i + 4])
  redis.call('SET', KEYS[2 * i], entry, 'EX', ttl)
  local customer = KEYS[2 * i + 1]
  local ms, seq = string.match(entry, '^(%d+)-(%d+)$')
  redis.call('ZADD', customer, tonumber(ms) + math.min(tonumber(seq), 999) / 1000, entry)
  if not seen[customer] then
    seen[customer] = true
    customers[#customers + 1] = customer
  end
end
local keep = -(tonumber(ARGV[3]) + 1)
for _, customer in ipairs(customers) do
  redis.call('ZREMRANGEBYRANK', customer, 0, keep)
  redis.call('EXPIRE', customer, ttl)
end
return records
"""

MAX_BATCH = 500
"""Records per script call: bounds the time one call holds Redis (~XADD+SET each)."""

SETTLE_MARGIN_SECONDS = 0.02
"""Beyond one flush window, how long another worker's batch may take to land."""

RETRY_SECONDS = 0.5
"""Pause before retrying a batch Redis refused (it stays queued meanwhile)."""

SCHEMA_RESEND_SECONDS = 600.0
"""How often a writer sends a packed feature-record schema it already wrote again (``SET
NX``: nothing changes when the key is there). A Redis that lost its keys (restarted
without persistence, flushed) gets the schema back within this time, and the decisions
written in between become readable again (the key is content-addressed)."""

Outcome = Callable[[str, int], None]
"""``(outcome, count)``: ``written``, ``dropped`` (queue full) or ``failed`` (a batch that
could not be written at shutdown)."""


class AuditWriter:
    """A bounded queue of serialized decisions and the thread that writes them in batches."""

    def __init__(
        self,
        client: RedisClient,
        settings: Settings,
        on_outcome: Outcome | None = None,
        on_error: Callable[[redis.RedisError], None] | None = None,
        can_write: Callable[[], bool] | None = None,
    ) -> None:
        """``can_write`` (e.g. "the Redis circuit breaker is closed") is asked before each
        batch; while it says no, batches wait in the queue instead of timing out."""
        self._client = client
        self._prefix = settings.audit_prefix
        self._retention = settings.audit_retention
        self._ttl = settings.audit_index_ttl_seconds
        self._window = settings.audit_flush_ms / 1000.0
        self._capacity = settings.audit_queue_max
        self._on_outcome = on_outcome or (lambda outcome, count: None)
        self._on_error = on_error or (lambda exc: None)
        self._can_write = can_write or (lambda: True)
        self._script = client.register_script(_APPEND_BATCH)
        # request id, customer, serialized record, id of the schema its features need
        self._queue: deque[tuple[str, str, bytes, str | None]] = deque()
        # Schemas of packed feature records: JSON of those to send with the next batch,
        # and when each was last written (sent again after SCHEMA_RESEND_SECONDS).
        self._schemas: dict[str, bytes] = {}
        self._schemas_written: dict[str, float] = {}
        self._cond = threading.Condition()
        self._submitted = 0  # records accepted so far
        self._done = 0  # records written or given up on so far
        self._stopping = False
        self._flushing = False  # someone waits in flush(): do not wait out the window
        self._thread: threading.Thread | None = None

    # -- the request thread's side -----------------------------------------------------------

    def submit(
        self, request_id: str, record: dict[str, object], schema: RecordSchema | None = None
    ) -> bool:
        """Queue one decision; False (and counted) when the queue is full.

        ``schema``: the schema of the record's packed feature record (``features_packed``,
        ``features.audit_features``), written with the batch unless already written.
        """
        payload = orjson.dumps(record)
        customer = str(record.get("customer") or "")
        schema_id = schema.id if schema is not None else None
        with self._cond:
            if len(self._queue) >= self._capacity:
                dropped = True
            else:
                dropped = False
                if schema is not None and schema.id not in self._schemas:
                    written = self._schemas_written.get(schema.id)
                    if written is None or time.monotonic() - written >= SCHEMA_RESEND_SECONDS:
                        self._schemas[schema.id] = schema_json(schema)
                self._queue.append((request_id, customer, payload, schema_id))
                self._submitted += 1
                if len(self._queue) == 1 or len(self._queue) >= MAX_BATCH:
                    self._cond.notify()
        if dropped:
            log.error(
                "decision not recorded: audit queue full", extra=fields(request_id=request_id)
            )
            self._on_outcome("dropped", 1)
        return not dropped

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every decision submitted before this call is written (or given up on).

        True when that happened within ``timeout``. Without a running writer thread the
        queue is written from the caller's thread (tests, tools).
        """
        if self._thread is None or not self._thread.is_alive():
            self._drain_now()
        with self._cond:
            target = self._submitted
            self._flushing = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def settle(self) -> None:
        """Make every decision answered before this call findable, on any worker.

        This process's queue is flushed; other processes' writers flush within one window,
        so waiting one window (plus a margin for their round trip) covers them. Called
        only on the rare path of a request id not found (``POST /v1/events``, ``GET
        /v1/decisions``) before answering that it is unknown.
        """
        self.flush()
        time.sleep(self._window + SETTLE_MARGIN_SECONDS)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (within ``timeout``), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        left = self.pending()
        if left:
            log.error("decisions not recorded at shutdown", extra=fields(count=left))
            self._on_outcome("failed", left)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._stopping)
                if self._stopping and not self._queue:
                    return
                # Let the window's decisions join this batch (cut short by a full batch,
                # a flush or a stop).
                self._cond.wait_for(self._hurry, self._window)
            while self.pending():
                if not self._write_one_batch():
                    with self._cond:  # Redis refused: wait, then retry (or give up on stop)
                        if self._cond.wait_for(lambda: self._stopping, RETRY_SECONDS):
                            return
                    break
            with self._cond:
                self._flushing = False

    def _hurry(self) -> bool:
        return self._stopping or self._flushing or len(self._queue) >= MAX_BATCH

    def _drain_now(self) -> None:
        while self.pending() and self._write_one_batch():
            pass

    def _write_one_batch(self) -> bool:
        """Write the oldest ``MAX_BATCH`` queued records; False if Redis refused them."""
        with self._cond:
            batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
        if not batch:
            return True
        if not self._can_write():
            return False
        keys = [decisions_key(self._prefix)]
        for request_id, customer, _, _ in batch:
            keys.append(decision_index_key(self._prefix, request_id))
            keys.append(customer_decisions_key(self._prefix, customer))
        with self._cond:
            schemas = {
                schema_id: self._schemas[schema_id]
                for *_, schema_id in batch
                if schema_id is not None and schema_id in self._schemas
            }
        keys += [audit_schema_key(self._prefix, schema_id) for schema_id in schemas]
        args: list[bytes | str | int | float] = [
            self._retention,
            self._ttl,
            CUSTOMER_INDEX_MAX,
            len(schemas),
            *(payload for _, _, payload, _ in batch),
            *schemas.values(),
        ]
        try:
            self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            log.warning(
                "audit batch not written yet",
                extra=fields(count=len(batch), error=type(exc).__name__),
            )
            self._on_error(exc)
            return False
        with self._cond:
            for _ in batch:
                self._queue.popleft()
            for schema_id in schemas:
                self._schemas_written[schema_id] = time.monotonic()
                self._schemas.pop(schema_id, None)
            self._done += len(batch)
            self._cond.notify_all()
        self._on_outcome("written", len(batch))
        return True
