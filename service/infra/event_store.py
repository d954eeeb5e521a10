"""Feedback events: validate, store durably once, update the contact state at once.

On a single Redis one Lua script does the storing, atomically, in one round trip (so a
crash or a concurrent duplicate can never leave half of it done):

1. ``{events_prefix}:{stream}:seen:{event_id}`` exists -> a duplicate: acknowledged with
   the entry id of the first copy, nothing written (idempotent by ``event_id``, for as
   long as ``event_dedupe_ttl_seconds``);
2. the ``request_id`` has no recorded decision (``{audit_prefix}:{decisions}:req:{id}``)
   -> rejected, nothing written;
3. ``XADD`` to the events stream (``MAXLEN ~ events_retention``), mark the event id seen
   with a TTL, and for ``shown`` / ``declined`` / ``accepted`` add it to the customer's
   contact-state sorted set (trimmed to the policy horizon, TTL refreshed).

On a Redis Cluster those keys live in three slots (the events stream's, the audit
trail's, the customer's), and a script may only touch one, so the same steps take three
calls, each confined to one slot:

a. ``EXISTS`` of the decision's index key (the audit slot);
b. a script on the events slot: duplicate check, then (if the decision exists) ``XADD`` +
   mark seen - atomic, so a concurrent duplicate is still stored once;
c. for a contact event, stored *or duplicate*, a script on the customer's slot adds the
   member, trims and refreshes the TTL. The member contains the event id, so applying it
   again changes nothing; applying it for a duplicate too is what makes a retry complete
   an event whose step c was cut short (crash, timeout): the client got no 202 and sends
   it again.

The service answers 202 only after the script returned, i.e. after Redis appended the
event. Checks that need no Redis (product known, timestamp not in the future beyond the
tolerance) run first. The stream holds the pseudonymous customer id, never the raw one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.cluster import RedisCluster

from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser
from core.redis_keys import contact_key, decision_index_key, event_seen_key, events_key
from core.redis_server import RedisClient
from core.settings import Settings
from service.api.schemas import EventIn
from service.decision.contact_policy import KIND_CODES, ContactLimits, member

_STORE = """
local seen = redis.call('GET', KEYS[1])
if seen then return {'duplicate', seen} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'unknown_request', ''} end
local entry = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 7))
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[6])
end
return {'stored', entry}
"""


# Redis Cluster, step b. KEYS: seen, stream. ARGV: dedupe TTL, retention, decision known
# (1/0), then the event's field/value pairs.
_APPEND_ONCE = """
local seen = redis.call('GET', KEYS[1])
if seen then return {'duplicate', seen} end
if ARGV[3] ~= '1' then return {'unknown_request', ''} end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
redis.call('SET', KEYS[1], entry, 'EX', ARGV[1])
return {'stored', entry}
"""

# Redis Cluster, step c. KEYS: the customer's contact key. ARGV: member, score, trim
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


@dataclass(frozen=True)
class Stored:
    status: str  # "stored" or "duplicate"
    stream_id: str


def check_event(event: EventIn, catalogue: Catalogue, now: datetime, tolerance_s: float) -> None:
    """Raise :class:`EventRejected` for an unknown product or a timestamp in the future."""
    if event.product_id not in catalogue.ids:
        raise EventRejected("product_id", "unknown_product", "unknown product", event.product_id)
    if event.timestamp > now + timedelta(seconds=tolerance_s):
        raise EventRejected(
            "timestamp",
            "future_timestamp",
            f"more than {tolerance_s:g} s in the future",
            event.timestamp.isoformat(),
        )


def store_event(
    client: RedisClient,
    settings: Settings,
    event: EventIn,
    pseudonymise: Pseudonymiser,
    now: datetime,
) -> Stored:
    """Append the event once and update the contact state (see the module docstring).

    Raises :class:`EventRejected` (``request_id``) when no decision with that id is
    recorded, and ``redis.RedisError`` when Redis fails (then nothing is acknowledged).
    """
    pseudonym = pseudonymise(event.customer_id)
    limits = ContactLimits.from_settings(settings)
    at = event.timestamp.astimezone(UTC)
    changes_contact = event.type in KIND_CODES
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
    fields = [item for pair in values.items() for item in pair]
    contact_change = (
        member(event.type, event.product_id, event.channel, event.event_id)
        if changes_contact
        else ""
    )
    if isinstance(client, RedisCluster):
        status, stream_id = _store_on_cluster(
            client, settings, event, pseudonym, fields, contact_change, at, now, limits
        )
    else:
        status, stream_id = _store_in_one_script(
            client, settings, event, pseudonym, fields, contact_change, at, now, limits
        )
    if status == "unknown_request":
        raise EventRejected(
            "request_id", UNKNOWN_REQUEST_ID, "unknown request_id", event.request_id
        )
    return Stored(status, stream_id)


def _decoded(reply: list[bytes | str]) -> tuple[str, str]:
    status, stream_id = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
    return status, stream_id


def _store_in_one_script(
    client: RedisClient,
    settings: Settings,
    event: EventIn,
    pseudonym: str,
    fields: list[str],
    contact_change: str,
    at: datetime,
    now: datetime,
    limits: ContactLimits,
) -> tuple[str, str]:
    script = client.register_script(_STORE)
    reply = script(
        keys=[
            event_seen_key(settings.events_prefix, event.event_id),
            decision_index_key(settings.audit_prefix, event.request_id),
            events_key(settings.events_prefix),
            contact_key(settings.contact_prefix, pseudonym),
        ],
        args=[
            settings.event_dedupe_ttl_seconds,
            settings.events_retention,
            contact_change,
            at.timestamp(),
            now.timestamp() - limits.horizon_seconds,
            limits.horizon_seconds,
            *fields,
        ],
    )
    return _decoded(reply)


def _store_on_cluster(
    client: RedisCluster,
    settings: Settings,
    event: EventIn,
    pseudonym: str,
    fields: list[str],
    contact_change: str,
    at: datetime,
    now: datetime,
    limits: ContactLimits,
) -> tuple[str, str]:
    """Steps a-c of the module docstring: three calls, one slot each."""
    known = bool(client.exists(decision_index_key(settings.audit_prefix, event.request_id)))
    append = client.register_script(_APPEND_ONCE)
    status, stream_id = _decoded(
        append(
            keys=[
                event_seen_key(settings.events_prefix, event.event_id),
                events_key(settings.events_prefix),
            ],
            args=[
                settings.event_dedupe_ttl_seconds,
                settings.events_retention,
                "1" if known else "0",
                *fields,
            ],
        )
    )
    if contact_change and status in ("stored", "duplicate"):
        add = client.register_script(_ADD_CONTACT)
        add(
            keys=[contact_key(settings.contact_prefix, pseudonym)],
            args=[
                contact_change,
                at.timestamp(),
                now.timestamp() - limits.horizon_seconds,
                limits.horizon_seconds,
            ],
        )
    return status, stream_id
