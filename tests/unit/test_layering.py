"""The package layout is the architecture: import-linter's contracts hold, and the API process
never loads Faust (it would pull in the worker's whole stack for one helper)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def _loaded(module: str, roots: set[str]) -> list[str]:
    """Which of the top-level packages `roots` a fresh interpreter loads with `module`."""
    code = (
        f"import sys, {module}\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & {roots!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().split(",") if m]


def test_the_api_process_does_not_load_faust() -> None:
    assert _loaded("services.app", {"faust", "mode"}) == []


def test_the_core_loads_no_adapter_library() -> None:
    adapters = {"faust", "mode", "aiokafka", "redis", "fastapi", "uvicorn", "starlette"}
    assert _loaded("streams.core", adapters) == []
