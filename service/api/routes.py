"""Every HTTP route of the service but the hot one, in matching order.

Endpoints are thin: parse, call the decision or infrastructure code, shape the answer.
The recommendation route is not here: ``service.app`` registers it on the application's
own router, ahead of this one (``service.api.recommendations.add_recommendation_route``),
so it matches on the first comparison without resolving an included router.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api import admin, decisions, events, operations

router = APIRouter()
router.include_router(events.router)
router.include_router(decisions.router)
router.include_router(operations.router)
router.include_router(admin.router)
