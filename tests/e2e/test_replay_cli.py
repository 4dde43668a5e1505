"""`pulse replay` as an operator runs it on a history file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

DATA = Path(__file__).parents[1] / "data"
SCHEMAS = Path(__file__).parents[2] / "streams" / "core" / "schemas"
SCHEMA_OF = {
    "lifecycle_changed": "lifecycle-changed.schema.json",
    "churn_warning": "churn-warning.schema.json",
    "tier_changed": "tier-changed.schema.json",
    "recall_reactivated": "recall-reactivated.schema.json",
    "rfm_segment_changed": "rfm-segment-changed.schema.json",
}


def test_replay_of_the_sample_writes_outputs_summary_and_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "replay",
            str(DATA / "sample-events.jsonl"),
            "--out",
            str(out),
            "--horizon-days",
            "14",
            "--baseline-days",
            "7",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "replayed" in done.stdout and "precision" in done.stdout
    lines = (out / "outputs.jsonl").read_text().splitlines()
    assert len(lines) > 100
    validators = {
        kind: jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))
        for kind, name in SCHEMA_OF.items()
    }
    kinds = set()
    for line in lines:
        doc = json.loads(line)
        validators[doc["kind"]].validate(doc)
        kinds.add(doc["kind"])
    assert kinds == set(SCHEMA_OF)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["users"] == 40
    assert sum(summary["summary"]["dead_letters"].values()) > 0
    ev = summary["evaluation"]
    assert ev["pulse"]["overall"]["warned"] > 0
    assert ev["baseline"]["rule"] == "silent 7 days"
    assert summary["populations"] and summary["weekly"]
    overall = summary["recall"]["rows"][0]
    assert overall["tier"] is None and overall["reason"] is None
    warned = sum(1 for line in lines if '"kind":"churn_warning"' in line)
    assert overall["treated"]["warned"] + overall["holdout"]["warned"] == warned
    report = (out / "report.html").read_text()
    assert "Pulse backtest of sample-events.jsonl" in report
    assert "Did the recall work?" in report
    for chart in ("populations.png", "weekly.png", "evaluation.png", "risk-scores.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
        assert f'src="{chart}"' in report


def test_replay_refuses_an_unknown_format_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "events.xml"
    bad.write_text("<events/>")
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(bad), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown format" in done.stderr
