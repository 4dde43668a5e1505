"""The e2e tests reuse the integration fixtures: real Tansu, redis-server and worker processes."""

from tests.integration.conftest import broker, make_stack, redis_server, stack  # noqa: F401
