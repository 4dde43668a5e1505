"""/healthz, /readyz, /metrics and the one error shape for unknown routes and bad requests."""

from __future__ import annotations

import httpx
import pytest

from services.settings import ApiSettings
from tests.api.conftest import READ_KEY, ClientFactory, auth


async def test_healthz(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


async def test_readyz_ok(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ready", "checks": {"redis": "ok", "broker": "ok"}}


async def test_readyz_names_the_broker_when_it_is_down(
    closed_broker_settings: ApiSettings, make_client: ClientFactory
) -> None:
    async with make_client(closed_broker_settings) as client:
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    err = resp.json()["error"]
    assert err["code"] == "not_ready" and "broker" in err["message"]
    assert err["details"]["redis"] == "ok"
    assert err["details"]["broker"].startswith("broker unavailable")


async def test_readyz_names_redis_when_it_is_down(
    settings: ApiSettings, make_client: ClientFactory
) -> None:
    from streams.local.embedded import free_port

    down = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_timeout_seconds": 1}
    )
    async with make_client(down) as client:
        resp = await client.get("/readyz")
    assert resp.status_code == 503
    details = resp.json()["error"]["details"]
    assert details["broker"] == "ok" and details["redis"].startswith("redis unavailable")


async def test_metrics_by_route_template(client: httpx.AsyncClient) -> None:
    for user in ("a", "b", "c"):
        await client.get(f"/v1/users/{user}", headers=auth(READ_KEY))
    await client.get("/nowhere/at/all")
    await client.get("/healthz")
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert (
        'pulse_api_requests_total{method="GET",route="/v1/users/{user_id}",status="404"} 3.0'
        in text
    )
    assert 'pulse_api_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'route="/healthz",status="200"' in text
    assert "pulse_api_request_duration_seconds_bucket{" in text
    assert "/v1/users/a" not in text


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v2/nothing")
    assert resp.status_code == 404
    assert set(resp.json()) == {"error"}
    assert resp.json()["error"]["code"] == "not_found"
    assert "/v2/nothing" in resp.json()["error"]["message"]
    resp = await client.put("/v1/stats", headers=auth(READ_KEY))
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path",
    ["/v1/users/u/transitions?limit=abc", "/v1/segments/stage/nope", "/v1/users/" + "x" * 129],
)
async def test_validation_errors_use_the_error_shape(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path, headers=auth(READ_KEY))
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "validation_error" and err["message"].startswith("invalid request")
    assert isinstance(err["details"], list) and err["details"][0]["loc"][0] in ("path", "query")


async def test_openapi_documents_routes_models_and_security(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths) >= {
        "/v1/users/{user_id}",
        "/v1/users/{user_id}/transitions",
        "/v1/segments/stage/{stage}",
        "/v1/segments/tier/{tier}",
        "/v1/stats",
        "/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    user = paths["/v1/users/{user_id}"]["get"]
    assert user["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UserView"
    )
    assert user["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    assert "requestBody" in paths["/v1/events"]["post"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])
    assert (await client.get("/docs")).status_code == 200


async def test_reads_answer_503_when_redis_is_down(
    settings: ApiSettings, make_client: ClientFactory
) -> None:
    from streams.local.embedded import free_port

    down = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "redis_timeout_seconds": 1}
    )
    async with make_client(down) as client:
        resp = await client.get("/v1/stats", headers=auth(READ_KEY))
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "view_unavailable"
    assert "retry-after" in resp.headers
