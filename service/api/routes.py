"""Every HTTP route of the service, in matching order.

Endpoints are thin: parse, call the decision or infrastructure code, shape the answer.
The recommendation route comes first: the router tries routes in order, and the hot route
then matches on the first comparison.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api import admin, decisions, events, operations, recommendations

router = APIRouter()
router.include_router(recommendations.router)
router.include_router(events.router)
router.include_router(decisions.router)
router.include_router(operations.router)
router.include_router(admin.router)
