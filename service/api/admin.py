"""Operations endpoints for the model lifecycle: ``POST /admin/reload``.

Like ``/metrics`` this is meant for the operators' network, not the public API.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from service.api.auth import requires
from service.runtime import RuntimeDep

router = APIRouter(tags=["operations"])


class ReloadOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot: str = Field(description="recommender, churn, challenger, maturity or response.")
    model: str
    alias: str
    outcome: str = Field(description="unchanged, swapped, refused, removed or error.")
    version: int | None = Field(description="Version now serving, or the refused one.")
    detail: str = Field(description="Why a version was refused or the check failed.")


class ReloadResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[ReloadOut]


@router.post("/admin/reload", response_model=ReloadResponse, openapi_extra=requires("admin"))
def reload_models(runtime: RuntimeDep) -> ReloadResponse:
    """Check the model aliases now; load, validate and swap in any new version.

    Answers when the check is done, with one result per model slot. A refused version
    leaves the old one serving. Runs in the thread pool, never on a recommendation request.
    """
    return ReloadResponse(
        results=[
            ReloadOut(
                slot=r.slot,
                model=r.model,
                alias=r.alias,
                outcome=r.outcome,
                version=r.version,
                detail=r.detail,
            )
            for r in runtime.watcher.check()
        ]
    )
