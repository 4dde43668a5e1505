"""The Pulse state API: FastAPI app factory and `serve()` (what `pulse api` runs).

Reads come from the Redis view the worker maintains (streams/view/keys.py); writes (events,
erasure tombstones) go to the events topic through a producer started on first use, so the
API starts and serves reads while the broker is down. The interactive docs (/docs, /redoc)
load Swagger UI and ReDoc from the `fastapi-offline` package, so they work without Internet.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from redis.asyncio import Redis

from services.auth import parse_api_keys
from services.broker import EventProducer
from services.errors import install_handlers
from services.metrics import ApiMetrics, MetricsMiddleware
from services.routes import ROUTERS
from services.settings import ApiSettings
from services.view import View
from streams.core.policy import Policy

log = logging.getLogger("pulse.api")


# Where the docs pages load their scripts and styles from (files of fastapi-offline).
DOCS_ASSETS_URL = "/docs-assets"
VENDOR = Path(__file__).parent / "static" / "vendor"


def create_app(settings: ApiSettings | None = None, policy: Policy | None = None) -> FastAPI:
    """A ready-to-serve app; its lifespan opens and closes the Redis client and producer.

    `policy` is the worker's (the tiers the segment routes accept come from it); when None
    it is loaded on first use from the settings' policy files (services.deps.get_policy).
    Raises ValueError when PULSE_API_KEYS is malformed.
    """
    settings = settings or ApiSettings()
    keys = parse_api_keys(settings.api_keys.get_secret_value())
    if not keys:
        log.warning("PULSE_API_KEYS is empty: every /v1 route answers 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
        producer = EventProducer(
            settings.bootstrap, settings.events_topic, settings.broker_timeout_seconds
        )
        app.state.view = View(redis, settings.view_prefix)
        app.state.producer = producer
        try:
            yield
        finally:
            await producer.close()
            await redis.aclose()

    app = FastAPIOffline(
        static_url=DOCS_ASSETS_URL,
        title="Pulse state API",
        version="1",
        description=(
            "Users' lifecycle state, transitions and segments from the Pulse view, and event "
            "ingestion. Authenticate with `X-API-Key` (or `Authorization: Bearer`); scopes "
            'read, ingest, admin. Every error is `{"error": {"code", "message", '
            '"details"?}}`.'
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    if policy is not None:
        app.state.policy = policy
    app.state.api_keys = keys
    metrics = ApiMetrics()
    app.state.metrics = metrics
    install_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    # The live page's chart library (services/static/vendor/*/README.md), served from the
    # package so the page works offline.
    app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    return app


def serve(settings: ApiSettings | None = None, policy: Policy | None = None) -> None:
    """Run the API with uvicorn on api_host:api_port until SIGINT/SIGTERM.

    Raises ValueError when PULSE_API_KEYS is malformed (see create_app).
    """
    import uvicorn

    settings = settings or ApiSettings()
    app = create_app(settings, policy)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )
