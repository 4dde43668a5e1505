"""API keys and scopes.

A request presents its key in `X-API-Key` or `Authorization: Bearer <key>`. The key is compared
with `hmac.compare_digest` against every configured key (no early exit), and the route's scope
must be among that key's scopes: read, ingest or admin (no scope implies another). Read-scope
routes also take the key from the live page's cookie (COOKIE). Keys are never logged nor echoed
back.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.errors import ApiError

SCOPES = frozenset({"read", "ingest", "admin"})
# Cookie set by the live page (routes/live.py) because EventSource cannot send headers. It is
# honoured on read-scope routes only, so a cookie can never ingest or erase (no CSRF surface).
COOKIE = "pulse_api_key"


@dataclass(frozen=True)
class ApiKey:
    """One configured key; `label` ("key#1", ...) is what logs may show instead of the key."""

    label: str
    secret: bytes
    scopes: frozenset[str]


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """Parse "KEY:scope+scope,KEY2:scope". Raises ValueError naming the entry (not the key)."""
    keys: list[ApiKey] = []
    for n, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        secret, sep, scope_text = entry.rpartition(":")
        if not sep or not secret:
            raise ValueError(f"PULSE_API_KEYS entry {n} must be KEY:scope[+scope...]")
        scopes = frozenset(s.strip() for s in scope_text.split("+") if s.strip())
        unknown = scopes - SCOPES
        if not scopes or unknown:
            raise ValueError(
                f"PULSE_API_KEYS entry {n}: scopes must be among {sorted(SCOPES)}, "
                f"got {sorted(scopes) or 'none'}"
            )
        keys.append(ApiKey(f"key#{n}", secret.encode(), scopes))
    return tuple(keys)


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")


def match_key(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The configured key equal to `presented` (constant-time against every key), or None."""
    candidate = presented.encode()
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(key.secret, candidate) and found is None:
            found = key
    return found


def require(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency that returns the caller's ApiKey, or answers 401/403."""
    assert scope in SCOPES

    async def dependency(
        request: Request,
        api_key: Annotated[str | None, Depends(_api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        presented = api_key or (bearer.credentials if bearer is not None else None)
        if not presented and scope == "read":
            presented = request.cookies.get(COOKIE)
        if not presented:
            raise ApiError(
                401,
                "missing_api_key",
                "send an API key in the X-API-Key header (or Authorization: Bearer)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        keys: tuple[ApiKey, ...] = request.app.state.api_keys
        key = match_key(keys, presented)
        if key is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope not in key.scopes:
            raise ApiError(
                403,
                "insufficient_scope",
                f"this route needs an API key with the '{scope}' scope",
                details={"required_scope": scope},
            )
        request.state.api_key_label = key.label
        return key

    return dependency
