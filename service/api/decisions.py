"""``GET /v1/decisions/{request_id}``: one recorded decision, for compliance and support."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from features.audit_export import read_decision
from service.api.auth import requires
from service.api.schemas import ErrorResponse, ValidationErrorResponse
from service.runtime import RuntimeDep

router = APIRouter()


@router.get(
    "/v1/decisions/{request_id}",
    responses={
        404: {"model": ErrorResponse, "description": "No recorded decision with this id."},
        422: {"model": ValidationErrorResponse, "description": "Malformed request id."},
    },
    summary="Why a customer was shown what they were shown",
    tags=["audit"],
    openapi_extra=requires("audit"),
)
def get_decision(
    request_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """The audit record of one recommendation (fields in ``docs/decisioning.md``).

    Who was asked about (pseudonymous id), on which channel, by which model versions and
    variant, from which feature set and how old it was, every candidate's score, every
    exclusion with its rule, the arbitration inputs, the contact state and the offers.
    404 once the decision is older than the audit retention (see ``nbo audit export``).
    """
    record = read_decision(runtime.redis, runtime.settings, request_id)
    if record is None:  # perhaps answered a moment ago and still in a write-behind queue
        runtime.audit.settle()
        record = read_decision(runtime.redis, runtime.settings, request_id)
    if record is None:
        raise HTTPException(404, f"no recorded decision {request_id} (unknown or expired)")
    return record
