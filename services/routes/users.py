"""GET /v1/users/{user_id}, GET /v1/users/{user_id}/transitions, DELETE /v1/users/{user_id}."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from services.auth import require
from services.broker import BrokerUnavailable
from services.deps import ProducerDep, SettingsDep, ViewDep
from services.errors import ApiError, error_responses
from services.models import ErasureRequested, TransitionList, UserView
from services.settings import ApiSettings
from streams.view.keys import TRANSITIONS_KEPT

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Annotated[str, Path(min_length=1, max_length=128, description="The user id.")]


def _not_found(user_id: str) -> ApiError:
    return ApiError(404, "user_not_found", f"no user {user_id!r} in the view")


def unavailable(settings: ApiSettings, exc: BrokerUnavailable) -> ApiError:
    return ApiError(
        503,
        "broker_unavailable",
        f"the event broker is unavailable, retry later ({exc})",
        headers={"Retry-After": str(settings.retry_after_seconds)},
    )


@router.get(
    "/{user_id}",
    response_model=UserView,
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403, 404, 422),
    summary="A user's current state",
)
async def get_user(user_id: UserId, view: ViewDep) -> dict[str, Any]:
    """The user's current figures (rolling windows, seen times, stage, tier, risk) as the
    worker last wrote them, with the view's `version` of the user. 404 user_not_found."""
    doc = await view.user(user_id)
    if doc is None:
        raise _not_found(user_id)
    return doc


@router.get(
    "/{user_id}/transitions",
    response_model=TransitionList,
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403, 404, 422),
    summary="A user's latest transitions",
)
async def get_transitions(
    user_id: UserId,
    view: ViewDep,
    limit: Annotated[int, Query(ge=1, le=TRANSITIONS_KEPT)] = 20,
) -> dict[str, Any]:
    """Up to `limit` of the user's latest outputs (lifecycle_changed, churn_warning,
    tier_changed and recall_reactivated documents as published), newest first.
    404 user_not_found."""
    items = await view.transitions(user_id, limit)
    if items is None:
        raise _not_found(user_id)
    return {"user_id": user_id, "items": items}


@router.delete(
    "/{user_id}",
    status_code=202,
    response_model=ErasureRequested,
    dependencies=[Depends(require("admin"))],
    responses=error_responses(401, 403, 422, 503),
    summary="Erase a user",
)
async def delete_user(
    user_id: UserId,
    producer: ProducerDep,
    settings: SettingsDep,
) -> ErasureRequested:
    """Publish a tombstone (key = user id, no value) to the events topic; the worker then
    erases the user's state and view. 202 once the broker acknowledged it; 503 with
    Retry-After when the broker is unavailable. Unknown users are accepted too (idempotent)."""
    try:
        await producer.send_all([(user_id.encode(), None)])
    except BrokerUnavailable as exc:
        raise unavailable(settings, exc) from None
    return ErasureRequested(user_id=user_id)
