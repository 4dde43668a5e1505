"""The Dockerfile's key properties, checked without a Docker engine: a multi-stage build on a
base image pinned to a version, a non-root runtime user, a health check, and a build context
that carries only what the image needs. hadolint runs too when it is installed."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import DOCKERFILE, ROOT, find_tool

PINNED_PYTHON = re.compile(r"^python:3\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?$")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for word, rest in _instructions() if word == "ARG" and "=" in rest
    )


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions():
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    return stages


def test_build_is_multi_stage_on_a_pinned_base_image() -> None:
    args = _args()
    froms = [rest.split()[0] for word, rest in _instructions() if word == "FROM"]
    assert len(froms) >= 2
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert PINNED_PYTHON.match(resolved), f"{resolved} is not pinned to a patch version"
    # The runtime stage copies the virtualenv from the build stage.
    runtime = _stages()[-1]
    assert any(w == "COPY" and r.startswith("--from=build") for w, r in runtime)


def test_runtime_runs_as_a_non_root_user_with_a_health_check_and_a_command() -> None:
    runtime = _stages()[-1]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any(word == "HEALTHCHECK" for word, _ in runtime)
    assert any(word == "CMD" for word, _ in runtime)


def test_build_context_carries_only_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing, then allow what the build copies"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for word, rest in _instructions():
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(rest.split()[:-1])
    assert copied <= allowed


def test_hadolint_finds_nothing() -> None:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the checks above cover the key properties)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
