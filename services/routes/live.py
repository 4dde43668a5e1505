"""The live page for people: counts per stage and tier, the most at-risk users, a feed of
warnings and tier changes (server-sent events from the output topics) and the event-time clock
next to wall time. Plain HTML + JS, no build step.

The browser signs in once with an API key (POST /live/session); the key then travels in an
HttpOnly, SameSite=Strict cookie, because EventSource cannot send headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from services.auth import COOKIE, ApiKey, match_key, require
from services.clock import wall_ms
from services.deps import SettingsDep
from services.errors import ApiError, error_responses
from services.feed import follow
from services.settings import ApiSettings
from streams.core.eventtime import format_ts, virtual_now

PAGE = Path(__file__).parents[1] / "static" / "live.html"
router = APIRouter()


class Session(BaseModel):
    api_key: str = Field(min_length=1, max_length=512)


class Clock(BaseModel):
    """The API's event-time clock at one instant, next to the wall clock."""

    event_time: str = Field(description="Event time now (RFC 3339, UTC): what stamps events.")
    event_time_ms: int = Field(description="The same, in epoch milliseconds.")
    wall_time: str = Field(description="Wall-clock time at the same instant (RFC 3339, UTC).")
    rate: float = Field(description="Virtual seconds per wall second (1: event time is wall time).")


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")


@router.get("/live/clock", response_model=Clock, tags=["live"], summary="Event-time clock")
async def clock(settings: SettingsDep) -> Clock:
    """The event time the API checks `ts` against and counts the stats windows from, with
    the wall time of the same instant. Under `pulse run` event time is the demo's accelerated
    clock (the worker's too), so a client stamping its own events (`pulse send`) reads "now"
    here. Needs no key: it tells the time and nothing about users."""
    wall = wall_ms()
    now = virtual_now(wall, settings.clock_origin_ms, settings.clock_rate)
    return Clock(
        event_time=format_ts(now),
        event_time_ms=now,
        wall_time=format_ts(wall),
        rate=settings.clock_rate,
    )


@router.post("/live/session", status_code=204, tags=["live"], responses=error_responses(400, 401))
async def open_session(body: Session, request: Request, response: Response) -> Response:
    """Exchange a key with the read scope for the live page's cookie."""
    key = match_key(request.app.state.api_keys, body.api_key)
    if key is None or "read" not in key.scopes:
        raise ApiError(401, "invalid_api_key", "the API key is not valid for the read scope")
    response.set_cookie(COOKIE, body.api_key, httponly=True, samesite="strict", path="/")
    response.status_code = 204
    return response


@router.get(
    "/live/feed",
    tags=["live"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(401, 403, 503)},
)
async def feed(
    request: Request, _key: Annotated[ApiKey, Depends(require("read"))]
) -> StreamingResponse:
    """Server-sent events: `churn_warning` and `tier_changed` records as they are published."""
    settings: ApiSettings = request.app.state.settings
    topics = {settings.warnings_topic: "churn_warning", settings.tiers_topic: "tier_changed"}
    return StreamingResponse(
        follow(settings.bootstrap, topics),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
