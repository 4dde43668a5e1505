"""Dead-letter records for `user-events.dlq`: reason, source position and the original bytes."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from streams.core.eventtime import format_ts

DLQ_SCHEMA_VERSION = 1
_json = msgspec.json.Encoder()


def dead_letter(
    *,
    reason: str,
    detail: str,
    user_id: str | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    received_at_ms: int,
) -> dict[str, Any]:
    """The dead-letter document; `original_b64` restores the exact bytes that were rejected."""
    raw = value or b""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "schema_version": DLQ_SCHEMA_VERSION,
        "reason": reason,
        "detail": detail,
        "user_id": user_id,
        "source": {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp_ms": timestamp_ms,
            "key_b64": base64.b64encode(key).decode() if key is not None else None,
        },
        "original_b64": base64.b64encode(raw).decode(),
        "original_text": text,
        "received_at": format_ts(received_at_ms),
    }


def encode_dead_letter(doc: dict[str, Any]) -> bytes:
    return _json.encode(doc)
