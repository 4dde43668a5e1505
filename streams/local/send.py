"""`pulse send`: one event to a running state API, stamped with the API's event-time clock.

Under `pulse run` that clock is the demo's accelerated one, so an event sent "now" lands among
the demo's events instead of far in their future (which the API would reject as
`timestamp_out_of_range`). The URL and key default to what `pulse run` saved in .pulse/run/.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from streams.local.state import RUN_DIR, STATE_FILE, load_state

TIMEOUT_SECONDS = 10.0


class SendError(Exception):
    """The event could not be sent; the message says why in one line and what to do."""


def resolve_target(url: str | None, key: str | None) -> tuple[str, str]:
    """The API URL and key: the ones given, else those `pulse run` saved. Raises SendError."""
    state = load_state()
    url = url or (state.api_url if state else None)
    key = key or (state.api_key if state else None)
    if not url or not key:
        raise SendError(
            f"no API to send to: start the demo with `make run` (it saves its URL and key in "
            f"{RUN_DIR / STATE_FILE}), or pass --url and --key"
        )
    return url.rstrip("/"), key


def build_event(
    *,
    user: str,
    etype: str,
    ts: int | str,
    amount: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The event document (the input contract): a fresh UUID as `event_id` unless given;
    `ts` as epoch millis when it is all digits, else as given (RFC 3339)."""
    doc: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "user_id": user,
        "type": etype,
        "ts": int(ts) if isinstance(ts, str) and ts.isdigit() else ts,
    }
    if amount is not None:
        doc["amount"] = amount
    return doc


def event_time_now(url: str) -> int:
    """The API's event time now, epoch millis (GET /live/clock). Raises SendError."""
    answer = _request(url, "/live/clock")
    return int(answer["event_time_ms"])


def send(url: str, key: str, event: dict[str, Any]) -> dict[str, Any]:
    """POST the event to /v1/events; the API's answer (IngestResult). Raises SendError."""
    body = json.dumps({"events": [event]}).encode()
    return _request(url, "/v1/events", body=body, key=key)


def _request(
    url: str, path: str, *, body: bytes | None = None, key: str | None = None
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if key is not None:
        headers["X-API-Key"] = key
    req = urllib.request.Request(url + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        raise SendError(_http_error(url + path, exc)) from None
    except (urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(
            f"no Pulse API answers at {url} ({reason}): is `make run` (`pulse run`) running?"
        ) from None
    except TimeoutError:
        raise SendError(f"the API at {url} did not answer within {TIMEOUT_SECONDS:g} s") from None
    except ValueError:
        raise SendError(f"{url + path} did not answer with JSON: is it a Pulse API?") from None


def _http_error(where: str, exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
        return f"{where} answered {exc.code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError, OSError):
        return f"{where} answered {exc.code} {exc.reason}"
