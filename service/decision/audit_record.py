"""The decision audit trail: every recommendation, recorded so that compliance can answer
"why was this customer shown this offer, by which model, and was it suitable?".

One record per response (see ``docs/decisioning.md`` for every field): request id, time,
pseudonymous customer id, channel, model versions and variant, catalogue and decisioning
versions, the feature set and its age, the feature record used (for replays), candidate
scores, every exclusion with its rule, the arbitration inputs (P(accept) and channel
affinity included) and contact state, the
customer's moments (lifecycle stage, tier, the treatments their triggers proposed), the
offers. The raw customer id is not in it: fields that name or identify a customer are
dropped from the feature record (:func:`without_identifiers`).

:func:`audit_record` is that record as readers see it; :func:`stored_record` builds it as
the trail stores it, exclusions and priorities in a compact form that
``features.audit_features.expand`` turns back into the readers' shape.

Storage (keys in ``core.redis_keys``): a Redis Stream bounded to about ``audit_retention``
entries (``XADD MAXLEN ~``) plus a per-request index key with a TTL. Records are written
behind the answer, in batches, by ``service.infra.audit_writer`` (its docstring says why
and what that trades); ``features.audit_export`` reads them back and copies the stream to
durable files (``nbo audit export``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import filterfalse
from operator import attrgetter, itemgetter
from typing import Any

from core.suitability import Exclusion
from features.audit_features import PACKED, PRIORITY_FIELDS, expand, pack
from features.online_store import FeatureSetInfo
from features.record_schema import RecordSchema
from service.api.schemas import OfferBody, ResponseBody
from service.decision.outcome import Decision

log = logging.getLogger(__name__)

IDENTIFYING_FIELDS = frozenset(
    {
        "customer_id",
        "customer",
        "id",
        "ncodpers",
        "name",
        "customer_name",
        "first_name",
        "last_name",
        "surname",
        "full_name",
        "email",
        "phone",
        "address",
    }
)
"""Fields never copied from a feature record into the audit trail, whatever they hold."""


def without_identifiers(record: Mapping[str, Any], customer_id: str) -> dict[str, Any]:
    """The feature record minus identifying fields and any value equal to the raw id.

    Runs once per decision on a record of a few hundred fields, nearly always with nothing
    to drop, so that case is kept cheap: the identifying field names of a key set are found
    once per key set (every record of a feature set has the same), and the raw id is looked
    for among the values in one C-level scan; only a record that holds something to drop is
    rebuilt field by field.
    """
    drop = _identifying_keys(tuple(record))
    if not drop and customer_id not in record.values():
        return dict(record)
    return {key: value for key, value in record.items() if key not in drop and value != customer_id}


@lru_cache(maxsize=64)
def _identifying_keys(keys: tuple[str, ...]) -> frozenset[str]:
    """The keys of a record's key set that name or identify a customer (any case)."""
    return frozenset(key for key in keys if key.lower() in IDENTIFYING_FIELDS)


def packable(raw: bytes, schema: RecordSchema, customer_id: str) -> bool:
    """The compact record ``raw`` may be stored as it is (``features.audit_features``).

    Only when :func:`without_identifiers` would drop nothing from it: its schema has no
    identifying field, no text of its lookup tables equals the raw id, and the raw id is
    not in its bytes (the JSON-stored fields). An id with characters JSON escapes is never
    packed, so the byte search cannot miss it. Otherwise the record is written as a dict,
    identifiers dropped.
    """
    texts = _schema_texts(schema)
    return (
        texts is not None
        and customer_id not in texts
        and _JSON_ESCAPED(customer_id) is None
        and customer_id.encode() not in raw
    )


_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]').search
"""The first character JSON escapes (a quote, a backslash, a control character) or None."""
_texts_by_schema: dict[str, frozenset[str] | None] = {}


def _schema_texts(schema: RecordSchema) -> frozenset[str] | None:
    """Every text of the schema's lookup tables; None when it has an identifying field."""
    if schema.id not in _texts_by_schema:
        identifying = any(f.name.lower() in IDENTIFYING_FIELDS for f in schema.fields)
        _texts_by_schema[schema.id] = (
            None
            if identifying
            else frozenset(v for f in schema.fields for v in f.values if isinstance(v, str))
        )
    return _texts_by_schema[schema.id]


def audit_record(
    response: ResponseBody,
    decision: Decision,
    features: Mapping[str, Any] | None,
    customer_id: str,
    pseudonym: str,
    holdout: Sequence[OfferBody] = (),
    raw_features: bytes | None = None,
    schema: RecordSchema | None = None,
) -> dict[str, Any]:
    """The audit record of one response as every reader sees it (plain JSON types).

    :func:`stored_record` expanded (``features.audit_features.expand``): exclusions and
    arbitration priorities as lists of objects. Parameters as :func:`stored_record`'s.
    """
    return expand(
        stored_record(
            response, decision, features, customer_id, pseudonym, holdout, raw_features, schema
        )
    )


_PRIORITY_ROW = attrgetter(
    "product.id", *PRIORITY_FIELDS[1:]
)  # one Priority -> its row of PRIORITY_FIELDS' values (in C: no Python frame per candidate)
_PRODUCT_ID = itemgetter(0)  # one Exclusion (or priority row) -> its product id
_OFFERED_ID = attrgetter("product.id")  # one Offer -> its product id


def stored_record(
    response: ResponseBody,
    decision: Decision,
    features: Mapping[str, Any] | None,
    customer_id: str,
    pseudonym: str,
    holdout: Sequence[OfferBody] = (),
    raw_features: bytes | None = None,
    schema: RecordSchema | None = None,
) -> dict[str, Any]:
    """The audit record of one response as the trail stores it (JSON types, tuples as
    arrays): the record readers see, with the exclusions and priorities in their compact
    form (``features.audit_features``), built with a few C calls instead of an object per
    product.

    ``holdout``: the offers a control customer would have been shown and was not
    (``service.decision.variant.hold_out``), kept so uplift against control is measurable.
    ``raw_features``, ``schema``: the compact record ``features`` was decoded from and its
    schema; when :func:`packable`, the record keeps those bytes (``features_packed``)
    instead of the dict, and the writer must be given ``schema`` with it.
    """
    decided_at = decision.decided_at or datetime.now(UTC)
    feature_set = decision.feature_set
    churn = decision.churn_risk
    decided = decided_at.isoformat()
    priorities = list(map(_PRIORITY_ROW, decision.priorities))
    return {
        "request_id": response["request_id"],
        "decided_at": decided,
        "today": decided[:10],  # the isoformat's date part: decided_at.date().isoformat()
        "customer": pseudonym,
        "channel": response["channel"],
        "model_versions": dict(response["model_versions"]),
        "variant": response["variant"],
        "feature_set": (
            {
                **_feature_set_fields(feature_set),
                "age_seconds": round((decided_at - feature_set.created_at).total_seconds(), 3),
            }
            if feature_set is not None
            else None
        ),
        **_features(features, customer_id, raw_features, schema),
        "degraded_reason": response["degraded_reason"],
        "churn_risk": (
            {"probability": churn.probability, "band": churn.band.value} if churn else None
        ),
        "candidate_scores": decision.scores,
        # precomputed | online: where the model's scores and reasons came from (None: fallback)
        "scores_source": decision.scores_source,
        "exclusions": _exclusions(decision.exclusions),
        "arbitration": {
            "retention_eligible": decision.retention_eligible,
            "priorities": priorities,
        },
        # ranked below the top k (with offers, holdout offers and exclusions: every product
        # of the catalogue)
        "ranked_out": _ranked_out(decision, map(_PRODUCT_ID, priorities)),
        "contact": decision.contact,
        "acceptance": decision.acceptance.as_record(),
        "lifecycle_stage": response["lifecycle_stage"],
        "tier": response["tier"],
        "moments": decision.moments.as_record(),
        "offers": response["offers"],  # already plain JSON types, never changed once sent
        "holdout_offers": list(holdout),
        "withheld_reason": response["withheld_reason"],
        "shadow": decision.shadow,  # challenger's offers in shadow mode (never shown)
    }


_feature_sets: dict[str, tuple[FeatureSetInfo, dict[str, str]]] = {}


def _feature_set_fields(feature_set: FeatureSetInfo) -> dict[str, str]:
    """The record's fixed fields of ``feature_set`` (all but its age), made once per set
    (every decision of a set records the same) and looked up by version after."""
    known = _feature_sets.get(feature_set.version)
    if known is None or known[0] is not feature_set:
        if len(_feature_sets) >= 16:  # a set is replaced about daily: keep the few recent
            _feature_sets.clear()
        fields = {
            "version": feature_set.version,
            "as_of": feature_set.as_of.isoformat(),
            "catalogue_version": feature_set.catalogue_version,
        }
        known = _feature_sets[feature_set.version] = (feature_set, fields)
    return known[1]


def _exclusions(exclusions: Sequence[Exclusion]) -> dict[str, Any] | list[Any]:
    """The exclusions in their stored form (``features.audit_features``): three columns,
    made by one ``zip`` (the rule is a StrEnum: a str, written as its value); none: ``[]``."""
    if not exclusions:
        return []
    products, rules, details = zip(*exclusions, strict=False)  # 3-tuples: three columns
    return {"products": products, "rules": rules, "details": details}


def _ranked_out(decision: Decision, products: Iterable[str]) -> list[str]:
    """``decision.ranked_out`` from the ranked ``products`` (the priorities' ids, in order),
    made with C-level maps rather than a Python frame per product."""
    gone = set(map(_PRODUCT_ID, decision.exclusions))
    gone.update(map(_OFFERED_ID, decision.offers))
    return list(filterfalse(gone.__contains__, products))


def _features(
    features: Mapping[str, Any] | None,
    customer_id: str,
    raw: bytes | None,
    schema: RecordSchema | None,
) -> dict[str, Any]:
    """The record's feature field: the packed bytes when allowed, else the dict."""
    if (
        features is not None
        and raw is not None
        and schema is not None
        and packable(raw, schema, customer_id)
    ):
        return {PACKED: pack(raw)}
    if features is None:
        return {"features": None}
    return {"features": without_identifiers(features, customer_id)}
