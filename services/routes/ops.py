"""Unauthenticated operations routes: /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.deps import ProducerDep, SettingsDep, ViewDep
from services.errors import ApiError, error_responses
from services.models import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """Always `{"status": "ok"}` while the process serves requests."""
    return Health()


async def _check(what: str, coro: Awaitable[object], timeout: float) -> str:
    try:
        await asyncio.wait_for(coro, timeout)
    except Exception as exc:
        return f"{what} unavailable: {type(exc).__name__}"
    return "ok"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=error_responses(503),
    summary="Readiness",
)
async def readyz(
    view: ViewDep,
    producer: ProducerDep,
    settings: SettingsDep,
) -> Readiness:
    """200 when Redis answers PING and the broker answers a metadata request; otherwise 503
    not_ready with `details` naming what failed."""
    redis, broker = await asyncio.gather(
        _check("redis", view.ping(), settings.redis_timeout_seconds),
        _check("broker", producer.check(), settings.broker_timeout_seconds + 1),
    )
    checks = {"redis": redis, "broker": broker}
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        raise ApiError(
            503, "not_ready", f"not ready: {', '.join(failed)} unavailable", details=checks
        )
    return Readiness(checks=checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    """The API's request counts and latencies in the Prometheus text format."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
