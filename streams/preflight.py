"""Checks that the broker and Redis answer, run by the `pulse` commands before they need them:
one line that says what to fix instead of a client library's traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

TIMEOUT_SECONDS = 10.0


class Unreachable(Exception):
    """A server a command needs did not answer, or its address is unusable; the message says
    which, where and what to set."""


def broker_unreachable(bootstrap: str) -> Unreachable:
    return Unreachable(
        f"cannot reach the broker at {bootstrap} (is it running? set PULSE_BROKER_URL)"
    )


def redis_unreachable(url: str) -> Unreachable:
    return Unreachable(
        f"cannot reach Redis at {redacted(url)} (is it running? set PULSE_REDIS_URL)"
    )


def redacted(url: str) -> str:
    """`url` without its password (Redis URLs may carry one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


async def check_broker(bootstrap: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """Return once the broker at `bootstrap` (host:port list) answered a metadata request.

    Raises Unreachable when it refused, did not answer within `timeout` or failed otherwise.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    # aiokafka logs every refused connection as an error: the message raised here replaces it.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise broker_unreachable(bootstrap) from exc
    finally:
        client_log.setLevel(level)
        await admin.close()


async def check_redis(url: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """Return once the Redis at `url` answered PING.

    Raises Unreachable when it cannot be reached, when it answers with an error (e.g. a
    wrong password), or when `url` is not a Redis URL.
    """
    try:
        client = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        raise Unreachable(
            f"{redacted(url)!r} is not a Redis URL: {exc} (set PULSE_REDIS_URL)"
        ) from None
    try:
        await client.ping()
    except AuthenticationError as exc:  # before ConnectionError, its base class
        raise Unreachable(
            f"Redis at {redacted(url)} refused the connection: {exc} (check PULSE_REDIS_URL)"
        ) from exc
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise redis_unreachable(url) from exc
    except RedisError as exc:
        raise Unreachable(
            f"Redis at {redacted(url)} answered with an error: {exc} (check PULSE_REDIS_URL)"
        ) from exc
    finally:
        await client.aclose()


def require_broker(bootstrap: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """`check_broker` from synchronous code, on an event loop of its own (the process's
    current loop, which Faust uses, is left alone). Raises Unreachable."""
    _run_alone(check_broker(bootstrap, timeout))


def require_redis(url: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """`check_redis` from synchronous code, as `require_broker`. Raises Unreachable."""
    _run_alone(check_redis(url, timeout))


def _run_alone(check: Coroutine[Any, Any, None]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(check)
    finally:
        loop.close()
