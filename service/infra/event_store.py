"""Feedback events: store durably once, update the contact state at once.

The caller has checked the event first - on its own and against the decision it cites
(``service.decision.feedback``; reading that decision is one round trip of its own,
``features.audit_export.read_decision``). Storing it is then, on a single Redis, one Lua
script, atomic in one round trip (so a crash or a concurrent duplicate can never leave
half of it done):

1. ``{events_prefix}:{stream}:seen:{event_id}`` exists -> the event id was used before,
   for ``event_dedupe_ttl_seconds``. The marker holds the first copy's stream entry id
   and a fingerprint of its content (:func:`fingerprint`): the same content is a
   ``duplicate`` (acknowledged with the first copy's entry id, nothing written), other
   content a ``conflict`` (nothing written; the caller answers 409). A marker written
   before fingerprints were kept (entry id only) counts as a duplicate.
2. ``XADD`` to the events stream (``MAXLEN ~ events_retention``), mark the event id seen
   (entry id + fingerprint) with a TTL, index the entry under the customer (read by the
   console, ``core.redis_keys.customer_events_key``), and for ``shown`` / ``declined`` /
   ``accepted`` add it to the customer's contact-state sorted set (trimmed to the policy
   horizon, TTL refreshed).

On a Redis Cluster the stream's and the customer's keys live in two slots, and a script
may only touch one, so the same steps take two calls, each confined to one slot:

a. a script on the events slot: step 1, then ``XADD`` + mark seen - atomic, so a
   concurrent duplicate is still stored once;
b. for a contact event, stored *or duplicate*, a script on the customer's slot adds the
   member, trims and refreshes the TTL. The member contains the event id, so applying it
   again changes nothing; applying it for a duplicate too is what makes a retry complete
   an event whose step b was cut short (crash, timeout): the client got no 202 and sends
   it again.

The service answers 202 only after the script returned, i.e. after Redis appended the
event. The stream holds the pseudonymous customer id, never the raw one, and so does the
fingerprint's input (a hash of the raw id could be reversed by hashing candidate ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from redis.cluster import RedisCluster

from core.redis_keys import (
    CUSTOMER_INDEX_MAX,
    contact_key,
    customer_events_key,
    event_seen_key,
    events_key,
)
from core.redis_server import RedisClient
from core.settings import Settings
from service.api.schemas import EventIn
from service.decision.contact_policy import KIND_CODES, ContactLimits, member

# The duplicate / conflict check shared by both scripts: KEYS[1] is the seen marker,
# ARGV[1] the event's fingerprint. A marker is "<entry id> <fingerprint>" (or, written
# before fingerprints were kept, "<entry id>").
_SEEN = """
local seen = redis.call('GET', KEYS[1])
if seen then
  local entry, digest = string.match(seen, '^(%S+) (%S+)$')
  if not entry then return {'duplicate', seen} end
  if digest == ARGV[1] then return {'duplicate', entry} end
  return {'conflict', entry}
end
"""

# Index the new entry (KEYS[n]) under its customer: a sorted set of entry ids scored by
# core.redis_keys.index_score, capped, with a TTL (what the console reads per customer).
_INDEX = """
local index = KEYS[{key}]
local ms, seq = string.match(entry, '^(%d+)-(%d+)$')
redis.call('ZADD', index, tonumber(ms) + math.min(tonumber(seq), 999) / 1000, entry)
redis.call('ZREMRANGEBYRANK', index, 0, -(tonumber(ARGV[{cap}]) + 1))
redis.call('EXPIRE', index, ARGV[{ttl}])
"""

# KEYS: seen, stream, contact, customer index. ARGV: fingerprint, dedupe TTL, retention,
# contact member ('' = none), its score, trim below, contact TTL, index TTL, index cap,
# then the event's field/value pairs.
_STORE = (
    _SEEN
    + """
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 10))
redis.call('SET', KEYS[1], entry .. ' ' .. ARGV[1], 'EX', ARGV[2])
"""
    + _INDEX.format(key=4, ttl=8, cap=9)
    + """
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[6])
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
return {'stored', entry}
"""
)

# Redis Cluster, step a. KEYS: seen, stream, customer index. ARGV: fingerprint, dedupe
# TTL, retention, index TTL, index cap, then the event's field/value pairs.
_APPEND_ONCE = (
    _SEEN
    + """
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 6))
redis.call('SET', KEYS[1], entry .. ' ' .. ARGV[1], 'EX', ARGV[2])
"""
    + _INDEX.format(key=3, ttl=4, cap=5)
    + """
return {'stored', entry}
"""
)

# Redis Cluster, step b. KEYS: the customer's contact key. ARGV: member, score, trim
# below, TTL.
_ADD_CONTACT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


UNKNOWN_REQUEST_ID = "unknown_request_id"
"""``EventRejected.kind`` of an event citing a decision that is not (yet) recorded."""


class EventRejected(ValueError):
    """The event is invalid; ``field`` names the body field at fault (HTTP 422)."""

    def __init__(self, field: str, kind: str, message: str, value: object) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.kind = kind
        self.message = message
        self.value = value


Status = Literal["stored", "duplicate", "conflict"]


@dataclass(frozen=True)
class Stored:
    """What became of the event: ``stored`` now, ``duplicate`` of the one stored as
    ``stream_id``, or ``conflict``: its id names another event (``stream_id``)."""

    status: Status
    stream_id: str


CONTENT_FIELDS = ("event_id", "type", "customer", "product_id", "request_id", "channel")
"""The stored fields that make an event what it is (with its timestamp as an instant);
``received_at`` is not one: a retry is received later."""


def fingerprint(values: dict[str, str], at: datetime) -> str:
    """A short digest of the event's content; equal for a retry, whatever the time zone
    its timestamp was written in."""
    content = "\x1f".join([*(values[name] for name in CONTENT_FIELDS), at.isoformat()])
    return hashlib.blake2b(content.encode(), digest_size=16).hexdigest()


def store_event(
    client: RedisClient,
    settings: Settings,
    event: EventIn,
    pseudonym: str,
    now: datetime,
) -> Stored:
    """Append the event once and update the contact state (see the module docstring).

    ``pseudonym`` is the customer's, under the settings' key. Raises ``redis.RedisError``
    when Redis fails (then nothing is acknowledged - though Redis may have run the script
    before the failure reached the caller: a retry with the same event id tells).
    """
    limits = ContactLimits.from_settings(settings)
    at = event.timestamp.astimezone(UTC)
    values = {
        "event_id": event.event_id,
        "type": event.type,
        "customer": pseudonym,
        "product_id": event.product_id,
        "request_id": event.request_id,
        "channel": event.channel,
        "timestamp": at.isoformat(),
        "received_at": now.astimezone(UTC).isoformat(),
    }
    digest = fingerprint(values, at)
    fields = [item for pair in values.items() for item in pair]
    contact_change = (
        member(event.type, event.product_id, event.channel, event.event_id)
        if event.type in KIND_CODES
        else ""
    )
    seen = event_seen_key(settings.events_prefix, event.event_id)
    stream = events_key(settings.events_prefix)
    contact = contact_key(settings.contact_prefix, pseudonym)
    contact_args: list[str | float] = [
        at.timestamp(),
        now.timestamp() - limits.horizon_seconds,
        limits.horizon_seconds,
    ]
    dedupe: list[str | float] = [
        digest,
        settings.event_dedupe_ttl_seconds,
        settings.events_retention,
    ]
    index = customer_events_key(settings.events_prefix, pseudonym)
    indexing: list[str | float] = [settings.audit_index_ttl_seconds, CUSTOMER_INDEX_MAX]
    if not isinstance(client, RedisCluster):
        script = client.register_script(_STORE)
        reply = script(
            keys=[seen, stream, contact, index],
            args=[*dedupe, contact_change, *contact_args, *indexing, *fields],
        )
        return _decoded(reply)
    # Redis Cluster: steps a and b of the module docstring, one slot each.
    stored = _decoded(
        client.register_script(_APPEND_ONCE)(
            keys=[seen, stream, index], args=[*dedupe, *indexing, *fields]
        )
    )
    if contact_change and stored.status != "conflict":
        client.register_script(_ADD_CONTACT)(keys=[contact], args=[contact_change, *contact_args])
    return stored


def _decoded(reply: list[bytes | str]) -> Stored:
    status, stream_id = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
    return Stored(_STATUSES[status], stream_id)


_STATUSES: dict[str, Status] = {
    "stored": "stored",
    "duplicate": "duplicate",
    "conflict": "conflict",
}
