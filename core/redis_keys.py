"""Every Redis key the project reads or writes, in one place.

Who writes (W) and who reads (R) each key (prefixes are settings: ``feature_prefix``,
``contact_prefix``, ``audit_prefix``, ``events_prefix``)::

    {feature_prefix}:current                      live version       W features  R service
    {feature_prefix}:versions                     versions by time   W/R features
    {feature_prefix}:pending                      versions in writing W/R features
    {feature_prefix}:writer-lock                  one writer at a time W/R features
    {feature_prefix}:v:{version}:meta             FeatureSetInfo     W features  R service
    {feature_prefix}:v:{version}:c:{<pseudonym>}  customer record    W features  R service
    {contact_prefix}:{<pseudonym>}                contact events     W/R service
    {audit_prefix}:{decisions}                    decisions stream   W service   R features, cli
    {audit_prefix}:{decisions}:req:{request_id}   one decision's id  W/R service
    {audit_prefix}:{decisions}:cust:{pseudonym}   a customer's ids   W service, cli  R console
    {events_prefix}:{stream}                      feedback stream    W service   R features
    {events_prefix}:{stream}:seen:{event_id}      one event's id     W/R service
    {events_prefix}:{stream}:cust:{pseudonym}     a customer's ids   W service, cli  R console
    {console_prefix}:session:{sha256 of its id}   console session    W/R service (console)

Braces are literal Redis Cluster hash tags: a customer's feature record and contact state
share the ``{<pseudonym>}`` tag (one slot, so the request path reads both with one script),
and each stream shares its tag with its index keys (so appending and indexing is one script
on one slot). On a single Redis they are ordinary characters.

Layouts older than the hash tags (renamed by ``nbo redis migrate-keys``, or read as they are
until the next materialization for feature records keyed by the raw customer id) are named
by the ``legacy_*`` functions.
"""

from __future__ import annotations

from dataclasses import dataclass

CUSTOMER_INDEX_MAX = 10_000
"""Newest entries kept in one customer's decision or event index (bounds its memory; older
ones stay in the stream and the exports, found by ``nbo audit why``)."""


def index_score(entry_id: str) -> float:
    """The score of a stream entry in a customer index: its milliseconds, plus its sequence
    number / 1000 (at most 0.999) so that entries appended in the same millisecond keep
    their order (equal scores would sort by the id's text: ``-10`` before ``-2``). Still
    milliseconds, so a time range is a score range. The service's scripts compute the same
    in Lua."""
    millis, _, seq = entry_id.partition("-")
    return int(millis) + min(int(seq or 0), 999) / 1000


_GLOB_SPECIAL = str.maketrans({c: f"\\{c}" for c in "*?[]\\"})


@dataclass(frozen=True)
class FeatureSetKeys:
    """The keys of the online store under one ``feature_prefix``."""

    prefix: str

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def versions(self) -> str:
        return f"{self.prefix}:versions"

    @property
    def pending(self) -> str:
        """Versions being written and not yet published (sorted set, score: start time)."""
        return f"{self.prefix}:pending"

    @property
    def writer_lock(self) -> str:
        """Held by the one materialization that may write under this prefix."""
        return f"{self.prefix}:writer-lock"

    def meta(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:meta"

    def record(self, version: str, pseudonym: str) -> str:
        """A customer's record, hash-tagged by the customer's pseudonym."""
        return f"{self.prefix}:v:{version}:c:{{{pseudonym}}}"

    def legacy_record(self, version: str, customer_id: str) -> str:
        """A record of a feature set written before pseudonymous keys (read only)."""
        return f"{self.prefix}:v:{version}:c:{customer_id}"

    def version_pattern(self, version: str) -> str:
        """A SCAN pattern matching every key of ``version`` (glob characters escaped)."""
        return f"{self.prefix}:v:{version}:".translate(_GLOB_SPECIAL) + "*"


def contact_key(contact_prefix: str, pseudonym: str) -> str:
    """The customer's contact-state sorted set; ``{pseudonym}`` is the customer's hash tag."""
    return f"{contact_prefix}:{{{pseudonym}}}"


def decisions_key(audit_prefix: str) -> str:
    """The audit trail stream; field ``d`` of an entry is one decision (orjson)."""
    return f"{audit_prefix}:{{decisions}}"


def decision_index_key(audit_prefix: str, request_id: str) -> str:
    """The stream entry id of one decision (with a TTL)."""
    return f"{decisions_key(audit_prefix)}:req:{request_id}"


def audit_schema_key(audit_prefix: str, schema_id: str) -> str:
    """The record schema of the feature records packed in decisions (JSON, no expiry;
    ``features.audit_features``); tagged like the stream, so written in the batch's script."""
    return f"{decisions_key(audit_prefix)}:schema:{schema_id}"


def customer_decisions_key(audit_prefix: str, pseudonym: str) -> str:
    """One customer's decisions: sorted set of stream entry ids scored by :func:`index_score`
    (the console's timeline; tagged like the stream, so written in the same script)."""
    return f"{decisions_key(audit_prefix)}:cust:{pseudonym}"


def events_key(events_prefix: str) -> str:
    """The feedback events stream."""
    return f"{events_prefix}:{{stream}}"


def event_seen_key(events_prefix: str, event_id: str) -> str:
    """The stream entry id and content fingerprint of one event (idempotence by
    ``event_id``, with a TTL; ``service.infra.event_store``)."""
    return f"{events_key(events_prefix)}:seen:{event_id}"


def customer_events_key(events_prefix: str, pseudonym: str) -> str:
    """One customer's feedback events: sorted set of stream entry ids scored by
    :func:`index_score` (tagged like the events stream)."""
    return f"{events_key(events_prefix)}:cust:{pseudonym}"


def console_session_key(console_prefix: str, session_digest: str) -> str:
    """A web-console session, keyed by the SHA-256 of its cookie value (a Redis dump holds
    no usable session id)."""
    return f"{console_prefix}:session:{session_digest}"


def glob_escape(text: str) -> str:
    """``text`` with the SCAN/KEYS glob characters escaped."""
    return text.translate(_GLOB_SPECIAL)


# Layout before hash tags (only ``nbo redis migrate-keys`` reads these).


def legacy_decisions_key(audit_prefix: str) -> str:
    return f"{audit_prefix}:decisions"


def legacy_decision_index_prefix(audit_prefix: str) -> str:
    return f"{audit_prefix}:req:"


def legacy_events_key(events_prefix: str) -> str:
    return f"{events_prefix}:stream"


def legacy_event_seen_prefix(events_prefix: str) -> str:
    return f"{events_prefix}:seen:"
