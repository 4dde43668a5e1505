"""The `pulse` commands with the broker or Redis missing (a closed loopback port, the real
thing): one line that says what to fix and exit status 2, or a one-line warning where the
process can serve without it; never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from streams.local.embedded import Server, free_port

pytestmark = pytest.mark.integration


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(
        PULSE_BROKER_URL=f"kafka://127.0.0.1:{free_port()}",
        PULSE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        PULSE_METRICS_PORT="0",
        PULSE_DATA_DIR=str(tmp_path / "data"),
    )
    env.update(settings)
    return env


def _pulse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _broker_line(command: str, env: dict[str, str]) -> str:
    address = env["PULSE_BROKER_URL"].removeprefix("kafka://")
    return (
        f"pulse {command}: cannot reach the broker at {address} "
        "(is it running? set PULSE_BROKER_URL)"
    )


def _redis_line(command: str, env: dict[str, str]) -> str:
    return (
        f"pulse {command}: cannot reach Redis at {env['PULSE_REDIS_URL']} "
        "(is it running? set PULSE_REDIS_URL)"
    )


@pytest.mark.parametrize("command", ["topics", "worker", "demo"])
def test_a_command_that_needs_the_broker_says_so_in_one_line(tmp_path: Path, command: str) -> None:
    env = _env(tmp_path)
    done = _pulse(env, command)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [_broker_line(command, env)]
    assert done.stdout == ""


def test_rebuild_view_names_redis_then_the_broker(
    tmp_path: Path,
    redis_server: Server,
) -> None:
    env = _env(tmp_path)
    done = _pulse(env, "rebuild-view")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [_redis_line("rebuild-view", env)]
    env["PULSE_REDIS_URL"] = f"redis://127.0.0.1:{redis_server.port}/0"
    done = _pulse(env, "rebuild-view")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [_broker_line("rebuild-view", env)]


def test_a_password_in_the_redis_url_is_not_printed(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, PULSE_REDIS_URL=f"redis://:s3cret@127.0.0.1:{port}/0")
    done = _pulse(env, "rebuild-view")
    assert done.returncode == 2
    assert "s3cret" not in done.stderr
    assert f"redis://:***@127.0.0.1:{port}/0" in done.stderr


def test_the_worker_warns_about_a_missing_redis_and_starts(
    tmp_path: Path,
    broker: Server,
) -> None:
    env = _env(tmp_path, PULSE_BROKER_URL=f"kafka://127.0.0.1:{broker.port}")
    env["PULSE_APP_ID"] = f"cli-errors-{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().rstrip("\n")
        assert first == (
            _redis_line("worker", env).replace("pulse worker: ", "pulse worker: warning: ")
            + "; the view is written once it answers"
        )
        time.sleep(1)
        assert proc.poll() is None  # still running: the view waits, the events do not
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_api_warns_and_serves_without_broker_and_redis(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, PULSE_API_PORT=str(port), PULSE_API_KEYS="k-0123456789abcdef:read")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "api"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline().rstrip("\n") for _ in range(2)]
        assert lines == [
            _redis_line("api", env).replace("pulse api: ", "pulse api: warning: ")
            + "; until it answers, reads answer 503",
            _broker_line("api", env).replace("pulse api: ", "pulse api: warning: ")
            + "; until it answers, ingestion and erasure answer 503",
        ]
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
                break
            except OSError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.2)
        docs = urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=5)
        assert docs.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"PULSE_API_KEYS": "no-scope"}, "pulse api: PULSE_API_KEYS entry 1 must be KEY:scope"),
        ({"PULSE_POLICY_FILE": "/nonexistent/policy.toml"}, "pulse api: cannot read policy"),
    ],
)
def test_the_api_refuses_unusable_settings_in_one_line(
    tmp_path: Path, settings: dict[str, str], said: str
) -> None:
    done = _pulse(_env(tmp_path, **settings), "api")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(said), done.stderr


def test_rebuild_view_refuses_an_unusable_policy_in_one_line(tmp_path: Path) -> None:
    done = _pulse(_env(tmp_path, PULSE_POLICY_FILE="/nonexistent/policy.toml"), "rebuild-view")
    assert done.returncode == 2
    assert done.stderr.startswith("pulse rebuild-view: cannot read policy file")
    assert len(done.stderr.splitlines()) == 1


def test_topics_creates_the_topics_once_the_broker_answers(
    tmp_path: Path,
    broker: Server,
) -> None:
    # Topic names of its own: the session broker is shared with the other tests.
    run = uuid.uuid4().hex[:8]
    names = {
        f"PULSE_{field.upper()}_TOPIC": f"{run}-{field}"
        for field in ("events", "lifecycle", "warnings", "tiers", "rfm", "dlq", "ticks")
    }
    env = _env(tmp_path, PULSE_BROKER_URL=f"kafka://127.0.0.1:{broker.port}", **names)
    done = _pulse(env, "topics")
    assert done.returncode == 0, done.stderr
    created = done.stdout.strip().removeprefix("created: ").split(", ")
    assert set(names.values()) <= set(created)
    again = _pulse(env, "topics")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "created: nothing (all topics exist)"
