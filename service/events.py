"""Feedback events: validate, store durably once, update the contact state at once.

One Lua script does the storing, atomically, in one round trip (so a crash or a concurrent
duplicate can never leave half of it done):

1. ``{events_prefix}:seen:{event_id}`` exists -> a duplicate: acknowledged with the entry
   id of the first copy, nothing written (idempotent by ``event_id``, for as long as
   ``event_dedupe_ttl_seconds``);
2. the ``request_id`` has no recorded decision (``{audit_prefix}:req:{id}``) -> rejected,
   nothing written;
3. ``XADD`` to the events stream (``MAXLEN ~ events_retention``), mark the event id seen
   with a TTL, and for ``shown`` / ``declined`` / ``accepted`` add it to the customer's
   contact-state sorted set (trimmed to the policy horizon, TTL refreshed).

The service answers 202 only after the script returned, i.e. after Redis appended the
event. Checks that need no Redis (product known, timestamp not in the future beyond the
tolerance) run first. The stream holds the pseudonymous customer id, never the raw one.
A single Redis (or keys in one Cluster slot) is assumed by the multi-key script.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from core.catalogue import Catalogue
from core.pseudonym import Pseudonymiser
from core.settings import Settings
from features.streams import decision_index_key, event_seen_key, events_key
from service.contact_policy import KIND_CODES, ContactLimits, contact_key, member
from service.schemas import EventIn

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
    client: redis.Redis,
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
            member(event.type, event.product_id, event.channel, event.event_id)
            if changes_contact
            else "",
            at.timestamp(),
            now.timestamp() - limits.horizon_seconds,
            limits.horizon_seconds,
            *(item for pair in values.items() for item in pair),
        ],
    )
    status, stream_id = (part.decode() if isinstance(part, bytes) else str(part) for part in reply)
    if status == "unknown_request":
        raise EventRejected(
            "request_id", UNKNOWN_REQUEST_ID, "unknown request_id", event.request_id
        )
    return Stored(status, stream_id)
