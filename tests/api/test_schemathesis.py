"""Property-based requests generated from /openapi.json (schemathesis): no request makes the
API answer 5xx, and every answer conforms to the documented schema and status codes.

Bounded: a few examples per operation (about 10-20 s in all)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.python import asgi

from services.app import create_app
from services.settings import ApiSettings
from streams.local.embedded import Server
from tests.api.conftest import ALL_KEY
from tests.api.seed import seed_recall, seed_user


async def _seed(redis_port: int, prefix: str) -> None:
    r = aioredis.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
    try:
        for i, stage in enumerate(("new", "active", "at_risk", "dormant")):
            await seed_user(
                r, prefix, f"u-{i}", stage=stage, tier="gold", risk=i / 4, transitions=3
            )
        await seed_recall(r, prefix, {("treated", "gold", "activity_drop", "reactivated"): 3})
    finally:
        await r.aclose()


@pytest.fixture
def api_app(
    settings: ApiSettings, topic: str, redis_server: Server, prefix: str
) -> Iterator[FastAPI]:
    asyncio.run(_seed(redis_server.port, prefix))
    app = create_app(settings)
    yield app
    asgi.shutdown_lifespans()  # schemathesis ran the lifespan in its own event-loop thread


@pytest.fixture
def api_schema(api_app: FastAPI) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", api_app)


# Not positive_data_acceptance: a schema-valid random cursor or user id is rightly a 400/404.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def test_api_conforms_to_its_openapi(api_schema: schemathesis.schemas.BaseSchema) -> None:
    # schemathesis' own pytest plugin does not support pytest 9 yet: drive hypothesis directly.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # The live feed is an endless event stream: the browser test covers it.
    operations = [op for op in operations if op.path != "/live/feed"]
    assert len(operations) == 17
    statuses: Counter[int] = Counter()
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers={"X-API-Key": ALL_KEY}, checks=CHECKS)
            statuses[response.status_code] += 1

        try:
            check()
        except Unsatisfiable:
            # Nothing to get wrong in a request without parameters (e.g. /healthz).
            assert mode is GenerationMode.NEGATIVE, operation.label
    # The runs reached the routes (not only validation errors).
    assert statuses[200] > 20 and statuses[422] > 5, statuses
