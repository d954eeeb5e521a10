"""Request and response bodies of the HTTP API (pydantic v2; shown in OpenAPI at ``/docs``).

Every model forbids unknown fields: a misspelt field is a 422 naming it, not silently
ignored. Requests are strict: ``"k": "3"`` is a type error, not a 3.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from core.decisioning import Stage, Tier
from core.tables import CHANNELS

Channel = Literal["app", "push", "sms", "email", "advisor", "branch"]
# Spelled out for type checkers and OpenAPI; must stay the canonical list of channels.
if set(get_args(Channel)) != set(CHANNELS):  # pragma: no cover - guards an edit of either list
    raise RuntimeError(f"service.api.schemas.Channel {get_args(Channel)} != core.tables {CHANNELS}")

ChurnBandName = Literal["low", "medium", "high"]


def _whole_number_to_int(value: object) -> object:
    """JSON has one number type: ``3.0`` is the integer 3 (as JSON Schema says), 3.5 is not.

    Strict mode still refuses ``"3"``, ``true`` and ``3.5``.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_whole_number_to_int)]

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?$"
)


def _rfc3339_text(value: object) -> object:
    """Date-time text as the schema's ``format: date-time`` (RFC 3339) says: not a number
    or a count of seconds (``"1767225600"``), not a bare date. A missing offset is left for
    the ``timezone_aware`` error to name.

    (The field itself is lax: after a before-validator pydantic sees a Python ``str``, which
    a strict datetime refuses even in JSON mode; the strictness is here instead. A
    ``datetime`` passes: JSON cannot hold one, only Python code building an event can.)
    """
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "Input should be a valid datetime")
    if not _RFC3339.match(value):
        raise PydanticCustomError(
            "datetime_format",
            "Input should be an RFC 3339 date-time with a time zone, e.g. 2026-11-02T10:15:00Z",
        )
    return value


def _in_utc(value: datetime) -> datetime:
    """The instant in UTC; a date whose offset pushes it outside years 1-9999 is an error
    (``0001-01-01T00:00:00+01:00``), not an ``OverflowError`` later on."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_out_of_range", "Input should be a date-time within years 1-9999 in UTC"
        ) from None


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]
"""An RFC 3339 date-time with a time zone (JSON text only), converted to UTC."""


class RecommendationRequest(BaseModel):
    """Ask for the next best offers for one customer on one channel."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"customer_id": "C0001234", "channel": "app", "k": 3}]},
    )

    customer_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The bank's customer id (letters, digits, '_' and '-').",
        examples=["C0001234"],
    )
    channel: Channel = Field(description="Where the offers will be shown.", examples=["app"])
    k: JsonInt = Field(3, ge=1, le=20, description="How many offers at most.", examples=[3])


class ReasonOut(BaseModel):
    """Why an offer was made (or why churn risk is what it is)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Machine-readable reason code.", examples=["collaborative"])
    text: str = Field(
        description="Short text for an advisor or the customer.",
        examples=["customers with holdings like yours added this"],
    )


class OfferOut(BaseModel):
    """One offer; ``rank`` 1 is shown first."""

    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(description="Catalogue product id.", examples=["credit_card"])
    name: str = Field(description="Product name from the catalogue.", examples=["Credit card"])
    rank: int = Field(ge=1, description="Position, 1 = first.", examples=[1])
    score: float | None = Field(
        description=(
            "Model propensity (0-1); popularity in a degraded answer; null for a retention "
            "treatment (its propensity is the churn probability) or when no model is loaded."
        ),
        examples=[0.31],
    )
    priority: float | None = Field(
        None,
        description=(
            "Arbitration priority: propensity x business value x channel weight x lever "
            "(x retention boost), x P(accept) x channel affinity when the offer-response "
            "model is loaded; offers are sorted by it."
        ),
        examples=[0.62],
    )
    reasons: list[ReasonOut] = Field(
        description=(
            "Why this offer: the model's reasons (a treatment: its trigger's, e.g. the "
            "maturity date, amount band and risk), then the arbitration trace."
        )
    )
    trigger: str | None = Field(
        None,
        description=(
            "What made this treatment a candidate: churn, maturity, upgrade, "
            "date_rule:<rule> or stage:<lifecycle stage>; null for a cross-sell product."
        ),
        examples=[None],
    )
    contract: str | None = Field(
        None,
        description="Pseudonymous key of the maturing contract of a maturity treatment.",
        examples=[None],
    )


class ChurnRiskOut(BaseModel):
    """Calibrated probability that the customer leaves within the churn model's horizon."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(ge=0, le=1, description="Churn probability.", examples=[0.62])
    band: ChurnBandName = Field(
        description="low / medium / high by the configured thresholds.", examples=["high"]
    )
    reasons: list[ReasonOut] = Field(description="Signals raising the risk most.")


class FeatureSetOut(BaseModel):
    """The materialized feature set the customer's record was read from."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(examples=["20261031-20261102T031500123456Z"])
    as_of: date = Field(description="Data cut-off of the features.", examples=["2026-10-31"])


class PreferredChannelOut(BaseModel):
    """Where to reach the customer (an outbound campaign picks its channel from this)."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel = Field(examples=["push"])
    source: Literal["responses", "record"] = Field(
        description=(
            "responses: the channel with the highest smoothed acceptance rate in the "
            "customer's recent contact history (they accepted an offer in it); record: the "
            "customer record's preferred_channel (no acceptance in the history)."
        ),
        examples=["responses"],
    )
    accept_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The smoothed acceptance rate on that channel (responses only).",
        examples=[0.34],
    )


ResponseBody = dict[str, Any]
"""A ``POST /v1/recommendations`` answer as plain JSON types, in the shape of
:class:`RecommendationResponse` (``service.decision.recommend.respond`` builds it)."""

OfferBody = dict[str, Any]
"""One offer of a :data:`ResponseBody`, in the shape of :class:`OfferOut`."""


class RecommendationResponse(BaseModel):
    """The decision for one request."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "request_id": "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f",
                    "customer_id": "C0001234",
                    "channel": "app",
                    "offers": [
                        {
                            "product_id": "credit_card",
                            "name": "Credit card",
                            "rank": 1,
                            "score": 0.31,
                            "reasons": [
                                {
                                    "code": "related_products",
                                    "text": "goes with products you already hold",
                                }
                            ],
                        }
                    ],
                    "churn_risk": {"probability": 0.08, "band": "low", "reasons": []},
                    "model_versions": {"nbo-recommender": "3", "nbo-churn": "2"},
                    "feature_set": {
                        "version": "20261031-20261102T031500123456Z",
                        "as_of": "2026-10-31",
                    },
                    "lifecycle_stage": "growing",
                    "tier": "mass",
                    "degraded": False,
                    "degraded_reason": None,
                    "preferred_channel": {
                        "channel": "push",
                        "source": "responses",
                        "accept_rate": 0.34,
                    },
                }
            ]
        },
    )

    request_id: str = Field(description="Id of this decision (uuid4 hex), also in the logs.")
    customer_id: str
    channel: Channel
    offers: list[OfferOut] = Field(
        description="Suitable offers, best first; empty when nothing suitable is left."
    )
    churn_risk: ChurnRiskOut | None = Field(
        description="Null when no churn model is loaded or the customer's record is unknown."
    )
    model_versions: dict[str, str] = Field(
        description="Registered model name -> version in use.",
        examples=[{"nbo-recommender": "3", "nbo-churn": "2"}],
    )
    feature_set: FeatureSetOut | None = Field(
        description="Feature set consulted; null when none is published or Redis failed."
    )
    lifecycle_stage: Stage | None = Field(
        None,
        description="The customer's lifecycle stage from the feature record; null if unknown.",
        examples=["growing"],
    )
    tier: Tier | None = Field(
        None,
        description="The customer's service tier from the feature record; null if unknown.",
        examples=["mass"],
    )
    degraded: bool = Field(description="True when the answer is the low-risk fallback.")
    degraded_reason: str | None = Field(
        description=(
            "unknown_customer, no_feature_set, feature_store_unavailable, "
            "invalid_feature_record or no_model; null when not degraded."
        ),
        examples=[None],
    )
    variant: Literal["champion", "challenger", "control"] = Field(
        "champion",
        description=(
            "Which recommender answered: the champion, or the challenger for the share of "
            "customers (a stable hash of the customer id) assigned to it; control for the "
            "share held out of proactive offers (NBO_CONTROL_SHARE)."
        ),
    )
    withheld_reason: Literal["control_group"] | None = Field(
        None,
        description=(
            "control_group when the customer is in the control group: no cross-sell offer "
            "is shown (only churn retention or maturity treatments); null otherwise."
        ),
        examples=[None],
    )
    preferred_channel: PreferredChannelOut | None = Field(
        None,
        description=(
            "The customer's preferred channel and how it was derived; null when neither "
            "the contact history nor the record says."
        ),
    )


class HealthResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"] = "ok"


class ReadinessResponse(BaseModel):
    """Whether the service can answer with personal recommendations."""

    model_config = ConfigDict(extra="forbid")

    ready: bool
    checks: dict[str, bool] = Field(
        description="recommender_model, feature_set, redis: true when available.",
        examples=[{"recommender_model": True, "feature_set": True, "redis": True}],
    )
    missing: list[str] = Field(description="Names of the failed checks.", examples=[[]])
    detail: dict[str, str] | None = Field(
        None,
        description=(
            "Only when a model is served from the last-known-good cache (registry "
            "unreachable at startup): model slot -> 'cache'."
        ),
        examples=[{"recommender": "cache", "churn": "cache"}],
    )


class ErrorResponse(BaseModel):
    """Every error: a stable ``type`` and a ``detail`` (a list of field errors for 422)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(examples=["validation_error"])
    detail: str | list[dict[str, Any]] = Field(
        examples=[[{"loc": ["body", "k"], "msg": "Input should be less than or equal to 20"}]]
    )


class FieldError(BaseModel):
    """One reason a request was refused: where (``loc``), what kind (``type``), in words."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(examples=["less_than_equal"])
    loc: list[str | int] = Field(
        description='Where: "body" (the whole body) or "body" / "path" then the field.',
        examples=[["body", "k"]],
    )
    msg: str = Field(examples=["Input should be less than or equal to 20"])
    input: Any = Field(
        None, description="The refused value, when it can be echoed (absent otherwise)."
    )
    ctx: dict[str, Any] | None = Field(None, description="The rule's parameters, if any.")


class ValidationErrorResponse(BaseModel):
    """A 422: the request is well-formed HTTP but not a valid request; every field at fault."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["validation_error"]
    detail: list[FieldError] = Field(min_length=1)


# -- feedback events and recorded decisions ------------------------------------------------

EventType = Literal["shown", "clicked", "accepted", "declined"]


class EventIn(BaseModel):
    """One customer response to an offer (``POST /v1/events``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "event_id": "evt-000123",
                    "type": "shown",
                    "customer_id": "C0001234",
                    "product_id": "credit_card",
                    "request_id": "3f2b8c1e9d7a4b6c8e0f1a2b3c4d5e6f",
                    "channel": "app",
                    "timestamp": "2026-11-02T10:15:00Z",
                }
            ]
        },
    )

    event_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Caller's unique id of the event; a repeat is acknowledged, counted once.",
    )
    type: EventType = Field(description="shown, clicked, accepted or declined.")
    customer_id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The bank's id."
    )
    product_id: str = Field(
        min_length=2,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]+$",
        description="Catalogue product id of the offer (as in core/catalogue.yaml).",
    )
    request_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="request_id of the recommendation that made the offer (a recorded decision).",
    )
    channel: Channel = Field(description="Where the offer was shown.")
    timestamp: UtcDatetime = Field(
        strict=False,
        description=(
            "When it happened: an RFC 3339 date-time with a time zone, not before the cited "
            "decision nor more than a few minutes in the future (server clock)."
        ),
    )


class EventAck(BaseModel):
    """The event is durably stored (``stored``) or was already (``duplicate``)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    status: Literal["stored", "duplicate"]
    stream_id: str = Field(description="Id of the event's entry in the events stream.")
