"""POST /v1/events: validate a batch with the worker's contract and publish the valid events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from services.auth import require
from services.broker import BrokerUnavailable
from services.clock import now_ms
from services.deps import ProducerDep, SettingsDep
from services.errors import error_responses
from services.ingest import check_events, read_body, split_batch
from services.models import EventResult, IngestResult
from services.routes.users import unavailable

router = APIRouter(prefix="/v1", tags=["events"])

_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "A user event (see the input contract, streams/core/schemas/user-event.schema.json)."
    ),
    "properties": {
        "event_id": {"type": "string"},
        "user_id": {"type": "string"},
        "type": {"type": "string"},
        "ts": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "amount": {"oneOf": [{"type": "number"}, {"type": "string"}]},
        "properties": {"type": "object"},
    },
    "required": ["event_id", "user_id", "type", "ts"],
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {"events": {"type": "array", "items": _EVENT_SCHEMA}},
                            "required": ["events"],
                        },
                        {"type": "array", "items": _EVENT_SCHEMA},
                    ]
                },
                "example": {
                    "events": [
                        {
                            "event_id": "e-1001",
                            "user_id": "u-42",
                            "type": "purchase",
                            "ts": "2026-11-22T10:00:00Z",
                            "amount": "19.90",
                        }
                    ]
                },
            }
        },
    }
}


@router.post(
    "/events",
    response_model=IngestResult,
    response_model_exclude_none=True,
    dependencies=[Depends(require("ingest"))],
    responses=error_responses(400, 401, 403, 413, 422, 503),
    openapi_extra=_BODY,
    summary="Publish user events",
)
async def post_events(
    request: Request,
    producer: ProducerDep,
    settings: SettingsDep,
) -> IngestResult:
    """Validate each event of `{"events": [...]}` (or a bare JSON array) exactly as the worker
    does, publish the valid ones to the events topic (key = user id, value = the event's
    original JSON) and answer once the broker acknowledged them.

    The answer is 200 with one result per event, `accepted` or `rejected` with the
    dead-letter `reason` and a `detail`, also when some (or all) were rejected: check
    `rejected` or each result. 413 when the body exceeds max_body_bytes or the batch
    max_batch events; 503 with Retry-After, and nothing accepted, when the broker is
    unavailable (some events may have been written: resending the batch is safe, the worker
    drops repeated event ids). `ts` may be at most max_future_skew_seconds ahead of the API's
    event-time clock (services/clock.py: the demo's accelerated clock under `pulse run`).
    """
    body = await read_body(request, settings.max_body_bytes)
    raws = split_batch(body, settings.max_batch)
    checked = check_events(
        raws,
        now_ms=now_ms(settings),
        min_ts_ms=settings.min_valid_ts_ms,
        max_future_skew_ms=int(settings.max_future_skew_seconds * 1000),
        max_bytes=settings.max_event_bytes,
    )
    valid: list[tuple[bytes, bytes | None]] = [
        (c.user_id.encode(), c.raw) for c in checked if c.accepted and c.user_id
    ]
    try:
        await producer.send_all(valid)
    except BrokerUnavailable as exc:
        raise unavailable(settings, exc) from None
    results = [
        EventResult(
            index=c.index,
            status="accepted" if c.accepted else "rejected",
            event_id=c.event_id,
            reason=c.reason,
            detail=c.detail,
        )
        for c in checked
    ]
    return IngestResult(accepted=len(valid), rejected=len(checked) - len(valid), results=results)
