"""State API settings from the environment (prefix PULSE_), shared with the worker's names.

`api_keys` is "KEY:scope+scope,KEY2:scope" with scopes read, ingest and admin; empty (the
default) means every /v1 route answers 401. `cursor_secret` signs pagination cursors; every API
process behind one load balancer must use the same one. When it is unset it is derived from
`api_keys` (HMAC-SHA256 of the keys string), so processes with the same keys agree; set it
explicitly to keep cursors valid across key rotations.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, SecretStr

from streams.core.policy import Policy
from streams.settings import SharedSettings

_DERIVE_LABEL = b"pulse-api-cursor-secret-v1"


class ApiSettings(SharedSettings):
    """Every knob of the state API process (plus the shared broker/topic/Redis ones)."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_keys: SecretStr = SecretStr("")
    cursor_secret: SecretStr | None = None
    max_batch: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Bounds `ts` from the future, in event time (see clock_origin_ms / clock_rate).
    max_future_skew_seconds: float = Field(default=300, ge=0)
    # Same lower bound as the worker's default policy (2000-01-01T00:00:00Z).
    min_valid_ts_ms: int = Policy.model_fields["min_valid_ts_ms"].default
    # How long a request waits for the broker (start, metadata, acks) before answering 503.
    broker_timeout_seconds: float = Field(default=10.0, gt=0)
    # Seconds sent in Retry-After with a 503.
    retry_after_seconds: int = Field(default=5, ge=1)
    # Redis socket timeouts (connect and each command).
    redis_timeout_seconds: float = Field(default=5.0, gt=0)
    # The worker's accelerated event-time clock (same names, same meaning; services/clock.py):
    # origin + (wall - origin) * rate. `pulse run` sets both for its demo; rate 1 is wall time.
    clock_origin_ms: int = 0
    clock_rate: float = Field(default=1.0, gt=0)

    def cursor_key(self) -> bytes:
        """The HMAC key for cursors: `cursor_secret`, else derived from `api_keys`."""
        if self.cursor_secret is not None and self.cursor_secret.get_secret_value():
            return self.cursor_secret.get_secret_value().encode()
        keys = self.api_keys.get_secret_value().encode()
        return hmac.new(_DERIVE_LABEL, keys, hashlib.sha256).digest()
