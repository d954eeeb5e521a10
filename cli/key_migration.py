"""``nbo redis migrate-keys``: rename keys of the layout before Redis Cluster support.

The Redis Cluster layout put hash tags (``{...}``) into the key names (README "Redis
keys"). Data written by an earlier version keeps its old names on a single Redis:

=========================================  ==================================================
before                                     now
=========================================  ==================================================
``{contact_prefix}:<pseudonym>``           ``{contact_prefix}:{<pseudonym>}``
``{audit_prefix}:decisions``               ``{audit_prefix}:{decisions}``
``{audit_prefix}:req:<request id>``        ``{audit_prefix}:{decisions}:req:<request id>``
``{events_prefix}:stream``                 ``{events_prefix}:{stream}``
``{events_prefix}:seen:<event id>``        ``{events_prefix}:{stream}:seen:<event id>``
=========================================  ==================================================

Feature records need no renaming: a feature set published before keeps being read with
its old keys until the next ``nbo features materialize`` replaces it.

``RENAME`` keeps each key's TTL. A contact set whose new key already exists (events
arrived after the upgrade) is merged into it (``ZUNIONSTORE``, the longer TTL kept). A
stream whose new key already exists cannot be merged (entry ids only grow): it is left
under its old name and reported, and so are its index / seen keys, whose entry ids point
into it. Runs on a single Redis, where any two keys may be renamed into each other; a
cluster never held the old layout. Safe to run again: a second run finds nothing to move.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import redis

from core.redis_keys import (
    contact_key,
    decision_index_key,
    decisions_key,
    event_seen_key,
    events_key,
    glob_escape,
    legacy_decision_index_prefix,
    legacy_decisions_key,
    legacy_event_seen_prefix,
    legacy_events_key,
)
from core.redis_server import RedisClient
from core.settings import Settings

log = logging.getLogger(__name__)

_PSEUDONYM = re.compile(rb"[0-9a-f]{64}")


@dataclass
class MigrationReport:
    renamed: dict[str, int] = field(default_factory=dict)  # kind of key -> keys moved
    kept: list[str] = field(default_factory=list)  # old streams left in place (and why)


def _pattern(prefix: str) -> str:
    return glob_escape(prefix) + "*"


def migrate_legacy_keys(client: RedisClient, settings: Settings) -> MigrationReport:
    """Rename every old-layout key of ``settings``' prefixes; see the module docstring."""
    if not isinstance(client, redis.Redis):
        raise ValueError("migrate-keys runs on a single Redis (a cluster has no old keys)")
    report = MigrationReport()

    # Contact state: {contact_prefix}:<64 hex> (no braces).
    moved = 0
    base = f"{settings.contact_prefix}:".encode()
    for key in client.scan_iter(match=_pattern(f"{settings.contact_prefix}:"), count=1000):
        rest = key[len(base) :]
        if not _PSEUDONYM.fullmatch(rest):
            continue  # already {pseudonym}, or not a contact key
        new = contact_key(settings.contact_prefix, rest.decode())
        if client.exists(new):
            client.zunionstore(new, [new, key], aggregate="MAX")
            ttl = max(int(client.ttl(new)), int(client.ttl(key)))
            if ttl > 0:
                client.expire(new, ttl)
            client.delete(key)
        else:
            client.rename(key, new)
        moved += 1
    report.renamed["contact"] = moved

    for kind, old_stream, new_stream, old_item, new_item_of in (
        (
            "audit",
            legacy_decisions_key(settings.audit_prefix),
            decisions_key(settings.audit_prefix),
            legacy_decision_index_prefix(settings.audit_prefix),
            lambda rid: decision_index_key(settings.audit_prefix, rid),
        ),
        (
            "events",
            legacy_events_key(settings.events_prefix),
            events_key(settings.events_prefix),
            legacy_event_seen_prefix(settings.events_prefix),
            lambda eid: event_seen_key(settings.events_prefix, eid),
        ),
    ):
        if client.exists(old_stream):
            if client.exists(new_stream):
                report.kept.append(
                    f"{old_stream}: {new_stream} already exists; old entries stay under the "
                    "old name (with their lookup keys)"
                )
                continue
            client.rename(old_stream, new_stream)
        items = 0
        for key in client.scan_iter(match=_pattern(old_item), count=1000):
            client.rename(key, new_item_of(key.decode()[len(old_item) :]))
            items += 1
        report.renamed[kind] = items
    for name, count in report.renamed.items():
        log.info("migrated %d %s keys to the hash-tagged layout", count, name)
    return report
