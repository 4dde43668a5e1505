"""What `pulse run` saves in .pulse/run/ reads back, and `pulse env` prints it as shell
variables that `eval` turns back into the same URL and key, or says in one line that there is
none."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.cli import main
from streams.local.state import LocalState, load_state, save_state, shell_assignments


def _evaluated(lines: str) -> dict[str, str]:
    """The variables a POSIX shell's `eval` of `lines` sets (assignments only)."""
    return dict(word.split("=", 1) for word in shlex.split(lines))


def test_the_saved_state_reads_back_and_only_its_owner_can_read_it(tmp_path: Path) -> None:
    state = LocalState(api_key="demo-abc", ports={"api": 8123, "broker": 9092})
    path = save_state(state, tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_state(tmp_path) == state


@given(
    key=st.text(st.characters(blacklist_characters="\0"), min_size=1),
    port=st.integers(1, 65_535),
)
def test_the_shell_lines_evaluate_to_the_saved_url_and_key(key: str, port: int) -> None:
    lines = shell_assignments(LocalState(api_key=key, ports={"api": port}))
    assert _evaluated(lines) == {"API_URL": f"http://127.0.0.1:{port}", "KEY": key}


def test_a_state_without_an_api_port_has_no_shell_lines() -> None:
    with pytest.raises(ValueError, match="no API port"):
        shell_assignments(LocalState(api_key="demo-abc", ports={"broker": 9092}))


def test_pulse_env_prints_the_url_and_key_pulse_run_saved_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    save_state(LocalState(api_key="demo-abc", ports={"api": 8123}), Path(".pulse/run"))
    assert main(["env"]) == 0
    out, err = capsys.readouterr()
    assert out == "API_URL=http://127.0.0.1:8123\nKEY=demo-abc\n"
    assert err == ""


@pytest.mark.parametrize(
    "saved",
    [None, "", "not json", '{"ports": {"api": 8123}}', '{"api_key": "demo-abc", "ports": {}}'],
    ids=["no file", "empty", "not json", "no key", "no API port"],
)
def test_pulse_env_without_a_saved_stack_says_so_in_one_line_and_exits_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    saved: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)
    if saved is not None:
        (tmp_path / ".pulse" / "run").mkdir(parents=True)
        (tmp_path / ".pulse" / "run" / "state.json").write_text(saved)
    assert main(["env"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pulse env: no stack state in "), err
    assert "make run" in err
