"""Opaque, signed pagination cursors for the segment lists.

A cursor is `base64url(JSON [risk, user_id]) "." base64url(HMAC-SHA256)`; the MAC covers the
position and the list it belongs to (segment and filters), so a cursor that was altered, signed
with another secret, or taken from another list is rejected (400 invalid_cursor).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from dataclasses import dataclass

from services.errors import ApiError


@dataclass(frozen=True)
class Position:
    """The last item of a page: the next page starts strictly after it."""

    risk: float
    user_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, context: str, body: bytes) -> bytes:
    return hmac.new(secret, context.encode() + b"\x1f" + body, hashlib.sha256).digest()


def encode_cursor(secret: bytes, context: str, pos: Position) -> str:
    """The cursor for `pos` in the list identified by `context`."""
    body = json.dumps([pos.risk, pos.user_id], separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(_mac(secret, context, body))}"


def _invalid() -> ApiError:
    return ApiError(
        400,
        "invalid_cursor",
        "the cursor is not valid for this list; start again without a cursor",
    )


def decode_cursor(secret: bytes, context: str, cursor: str) -> Position:
    """The position of a cursor from `encode_cursor`; raises ApiError 400 invalid_cursor."""
    body_text, sep, mac_text = cursor.partition(".")
    if not sep:
        raise _invalid()
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise _invalid() from None
    if not hmac.compare_digest(mac, _mac(secret, context, body)):
        raise _invalid()
    try:
        risk, user_id = json.loads(body)
    except (ValueError, TypeError):
        raise _invalid() from None
    if (
        isinstance(risk, bool)
        or not isinstance(risk, int | float)
        or not math.isfinite(risk)
        or not isinstance(user_id, str)
    ):
        raise _invalid()
    return Position(float(risk), user_id)
