"""The event batch of POST /v1/events: size limits, splitting into events, validation.

Events are split with msgspec.Raw, so each event's exact original bytes are both what
streams.core.contract.parse_event validates and what is produced to the events topic.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from fastapi import Request

from services.errors import ApiError
from streams.core.contract import InvalidEvent, parse_event


class _Batch(msgspec.Struct):
    events: list[msgspec.Raw]


@dataclass(frozen=True)
class Checked:
    """One event of the batch after validation: accepted with its key, or rejected."""

    index: int
    raw: bytes
    user_id: str | None
    event_id: str | None
    reason: str | None = None
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body; 413 payload_too_large as soon as it exceeds `max_bytes`."""
    too_large = ApiError(413, "payload_too_large", f"the request body exceeds {max_bytes} bytes")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def split_batch(body: bytes, max_batch: int) -> list[bytes]:
    """The raw events of `{"events": [...]}` or `[...]`; 400/422/413 when that is not it."""
    stripped = body.lstrip()
    try:
        if stripped.startswith(b"["):
            raws = msgspec.json.decode(body, type=list[msgspec.Raw])
        else:
            raws = msgspec.json.decode(body, type=_Batch).events
    except msgspec.ValidationError as exc:
        raise ApiError(
            422,
            "invalid_batch",
            f'the body must be {{"events": [...]}} or a JSON array of events: {exc}',
        ) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not raws:
        raise ApiError(422, "empty_batch", "the batch holds no events")
    if len(raws) > max_batch:
        raise ApiError(
            413,
            "batch_too_large",
            f"the batch holds {len(raws)} events, the limit is {max_batch}",
            details={"max_batch": max_batch},
        )
    return [bytes(r) for r in raws]


def check_events(
    raws: list[bytes],
    *,
    now_ms: int,
    min_ts_ms: int,
    max_future_skew_ms: int,
    max_bytes: int,
) -> list[Checked]:
    """Validate each event with the worker's contract (streams.core.contract.parse_event)."""
    out = []
    for index, raw in enumerate(raws):
        try:
            ev = parse_event(
                raw,
                None,
                now_ms=now_ms,
                min_ts_ms=min_ts_ms,
                max_future_skew_ms=max_future_skew_ms,
                max_bytes=max_bytes,
            )
        except InvalidEvent as exc:
            out.append(Checked(index, raw, exc.user_id, None, exc.reason, exc.detail))
        else:
            out.append(Checked(index, raw, ev.user_id, ev.event_id))
    return out
