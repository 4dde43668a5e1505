"""One error shape for every failure: `{"error": {"code", "message", "details"?}}`.

`ApiError` is raised by routes and dependencies (`invalid_choice` builds the 422 for a value
outside a set known only at run time, such as the policy's tiers); the handlers installed by
`install_handlers` also turn FastAPI's validation errors (422), unknown routes (404), wrong
methods (405), Redis failures (503 view_unavailable, with Retry-After) and unexpected
exceptions (500) into the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("pulse.api")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    """What every non-2xx answer carries."""

    error: ErrorBody


class ApiError(Exception):
    """An error answered as `status` with the standard error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def invalid_choice(loc: tuple[str, str], value: str, allowed: Sequence[str], what: str) -> ApiError:
    """The 422 for a parameter outside a set only known at run time (e.g. the policy's tiers),
    in the shape of FastAPI's own validation errors: `loc` is ("path" or "query", name)."""
    names = [repr(a) for a in allowed]
    choices = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    msg = f"Input should be {choices} ({what}), not {value!r}"
    return ApiError(
        422,
        "validation_error",
        f"invalid request: {'.'.join(loc)}: {msg}",
        [{"loc": list(loc), "msg": msg, "type": "enum"}],
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


def _loc(err: dict[str, Any]) -> str:
    return ".".join(str(p) for p in err.get("loc", ()))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = exc.errors()[0] if exc.errors() else {}
    message = f"invalid request: {_loc(first)}: {first.get('msg', '')}" if first else "invalid"
    return error_response(422, "validation_error", message, errors)


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis unavailable: %s", type(exc).__name__)
    settings = getattr(request.app.state, "settings", None)
    retry = str(getattr(settings, "retry_after_seconds", 5))
    return error_response(
        503,
        "view_unavailable",
        "the state view (Redis) is unavailable, retry later",
        headers={"Retry-After": retry},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error")


def install_handlers(app: FastAPI) -> None:
    """Answer every error of `app` in the standard shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for `statuses`."""
    return {s: {"model": ErrorResponse} for s in statuses}
