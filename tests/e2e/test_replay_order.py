"""`pulse replay` on the same history in any record order, on old histories, and on histories
it must refuse (issue 16: customer-ordered exports lost 30% of the outputs and exited 0)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parents[1] / "data"
CDNOW = Path(str(resources.files("lifetimes.datasets") / "CDNOW_sample.txt"))
CDNOW_ARGS = ["--delimiter", "whitespace", "--columns", "master_id,user_id,ts,cds,amount"]


def pulse_replay(path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(path), "--out", str(out), "--quiet"]
        + list(extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def sample_user(line: str) -> str:
    try:
        return str(json.loads(line).get("user_id", ""))
    except (ValueError, AttributeError):
        return ""


def reordered(
    lines: list[str], user: Callable[[str], str], time: Callable[[str], Any]
) -> dict[str, list[str]]:
    """The lines by time, by customer, and shuffled with two seeds."""
    shuffled = {}
    for seed in (1, 2):
        copy = list(lines)
        random.Random(seed).shuffle(copy)
        shuffled[f"shuffled-{seed}"] = copy
    return {
        "time-sorted": sorted(lines, key=time),
        "customer-ordered": sorted(lines, key=user),
        **shuffled,
    }


def test_the_sample_in_any_order_writes_byte_identical_outputs(tmp_path: Path) -> None:
    lines = (DATA / "sample-events.jsonl").read_text().splitlines()

    def ts(line: str) -> int:
        try:
            return int(json.loads(line)["ts"])
        except (ValueError, KeyError, TypeError):
            return 0

    outputs = {}
    for name, ordered in reordered(lines, sample_user, ts).items():
        path = write_lines(tmp_path / f"{name}.jsonl", ordered)
        done = pulse_replay(path, tmp_path / name)
        assert done.returncode == 0, done.stderr
        outputs[name] = (tmp_path / name / "outputs.jsonl").read_bytes()
        summary = json.loads((tmp_path / name / "summary.json").read_text())["summary"]
        assert summary["dead_letters"] == {
            "invalid_json": 24,
            "invalid_value": 23,
            "missing_field": 28,
        }
    assert len(outputs["time-sorted"].splitlines()) > 100
    assert all(out == outputs["time-sorted"] for out in outputs.values())


def test_cdnow_in_customer_order_replays_like_the_sorted_file_with_no_dead_letters(
    tmp_path: Path,
) -> None:
    lines = [line for line in CDNOW.read_text().splitlines() if line.strip()]
    orders = reordered(lines, lambda line: line.split()[1], lambda line: line.split()[2])
    assert orders["customer-ordered"] == lines  # as the file is published
    outputs = {}
    for name, ordered in orders.items():
        path = write_lines(tmp_path / f"{name}.txt", ordered)
        done = pulse_replay(path, tmp_path / name, *CDNOW_ARGS)
        assert done.returncode == 0, done.stderr
        assert "dead letters none" in done.stdout
        outputs[name] = (tmp_path / name / "outputs.jsonl").read_bytes()
    # Outputs the sorted replay gave before issue 16's fix (the customer order gave 21,930),
    # and the RFM segment changes added since.
    lines_out = outputs["time-sorted"].splitlines()
    rfm = [line for line in lines_out if b'"kind":"rfm_segment_changed"' in line]
    assert len(lines_out) - len(rfm) == 29_905 and len(rfm) == 9_749
    assert all(out == outputs["time-sorted"] for out in outputs.values())


def test_a_history_whose_records_are_mostly_rejected_exits_1_with_the_reasons(
    tmp_path: Path,
) -> None:
    lines = [
        json.dumps({"event_id": f"e{i}", "user_id": "ann", "type": "page_view", "ts": ts})
        for i, ts in enumerate(["2026-01-05T10:00:00Z"] * 3 + ["05/01/2026 10:00"] * 6)
    ] + ["{cut off"]
    done = pulse_replay(write_lines(tmp_path / "bad.jsonl", lines), tmp_path / "out")
    assert done.returncode == 1
    assert "mostly_rejected" in done.stderr
    assert "7 of 10 records (70%)" in done.stderr
    assert "wrong_type 6, invalid_json 1" in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["summary"]
    assert summary["dead_letters"] == {"wrong_type": 6, "invalid_json": 1}


def test_a_csv_read_with_the_wrong_time_column_exits_1(tmp_path: Path) -> None:
    orders = write_lines(
        tmp_path / "orders.csv", ["user_id,ts,amount", "c1,2026-01-05,10", "c2,yesterday,12"]
    )
    ok = pulse_replay(orders, tmp_path / "ok")  # one rejection in two: still usable
    assert ok.returncode == 0, ok.stderr
    swapped = pulse_replay(orders, tmp_path / "bad", "--time-col", "user_id")
    assert swapped.returncode == 1
    assert "2 of 2 records (100%)" in swapped.stderr and "wrong_type 2" in swapped.stderr
    assert "--time-col" in swapped.stderr  # what to check


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_an_empty_history_exits_1(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    done = pulse_replay(path, tmp_path / "out")
    assert done.returncode == 1
    assert "empty_history" in done.stderr and "no records" in done.stderr
