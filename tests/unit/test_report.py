"""The backtest report: report.html and its PNG charts, from hand-made data and a real replay."""

from __future__ import annotations

import copy
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streams.core.policy import Policy
from streams.offline.backtest import run_backtest
from streams.offline.report import (
    CHARTS,
    EVALUATION_PNG,
    POPULATIONS_PNG,
    REPORT,
    RISK_PNG,
    WEEKLY_PNG,
    ReportData,
    Score,
    render_report,
)

SAMPLE = Path(__file__).parents[1] / "data" / "sample-events.jsonl"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def score(
    warned: int,
    true_positives: int,
    precision: float | None,
    churned: int,
    caught: int,
    recall: float | None,
    lead: tuple[float | None, float | None, float | None] = (None, None, None),
) -> Score:
    return {
        "warned": warned,
        "churned": churned,
        "true_positives": true_positives,
        "caught": caught,
        "precision": precision,
        "recall": recall,
        "lead_time_days": {"median": lead[0], "p25": lead[1], "p75": lead[2]},
    }


def hand_made() -> ReportData:
    return {
        "title": "Pulse backtest of shop.jsonl",
        "source": "/data/shop.jsonl",
        "generated_at": "2026-03-02T08:00:00.000Z",
        "summary": {
            "events": 12345,
            "duplicates": 17,
            "users": 321,
            "dead_letters": {"invalid_json": 4, "missing_field": 2},
            "outputs": {"lifecycle_changed": 500, "churn_warning": 15, "tier_changed": 40},
            "first_event": "2026-01-01T00:00:00.000Z",
            "last_event": "2026-03-01T00:00:00.000Z",
            "seconds": 0.5,
        },
        "populations": [
            {
                "day": f"2026-01-{d:02d}",
                "stages": {
                    "new": 30 - d,
                    "active": 10 + d,
                    "at_risk": d % 4,
                    "dormant": d // 3,
                    "churned": d // 6,
                    "reactivated": d % 2,
                },
            }
            for d in range(1, 29)
        ],
        "weekly": [
            {"week": "2025-12-29", "warnings": 0, "tier_changes": 12, "reactivations": 0},
            {"week": "2026-01-05", "warnings": 6, "tier_changes": 3, "reactivations": 1},
            {"week": "2026-01-12", "warnings": 9, "tier_changes": 0, "reactivations": 2},
        ],
        "evaluation": {
            "horizon_days": 14,
            "pulse": {
                "overall": score(13, 8, 0.6154, 9, 7, 0.7778, (3.5, 2.25, 5.125)),
                "per_tier": {
                    "bronze": score(10, 6, 0.6, 7, 5, 0.7143, (3.0, 2.0, 4.0)),
                    "gold": score(3, 2, 0.6667, 2, 2, 1.0, (6.5, 6.0, 7.0)),
                },
            },
            "baseline": {
                "rule": "silent 7 days",
                "overall": score(20, 11, 0.55, 9, 9, 1.0, (7.0, 7.0, 7.0)),
                "per_tier": {"bronze": score(20, 11, 0.55, 9, 9, 1.0, (7.0, 7.0, 7.0))},
            },
        },
        "risk_scores": [0.1, 0.2333, 0.25, 0.4, 0.41, 0.9, 0.35, 0.3, 0.2, 0.15, 0.5, 0.6, 0.7],
        "tiers": ["bronze", "silver", "gold"],
    }


def empty() -> ReportData:
    return {
        "title": "Pulse backtest of empty.jsonl",
        "source": "empty.jsonl",
        "generated_at": "2026-03-02T08:00:00.000Z",
        "summary": {
            "events": 0,
            "duplicates": 0,
            "users": 0,
            "dead_letters": {},
            "outputs": {"lifecycle_changed": 0, "churn_warning": 0, "tier_changed": 0},
            "first_event": None,
            "last_event": None,
            "seconds": 0.0,
        },
        "populations": [],
        "weekly": [],
        "evaluation": None,
        "risk_scores": [],
    }


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def assert_sensible_png(path: Path) -> None:
    width, height = png_size(path)
    assert 600 <= width <= 2000 and 300 <= height <= 1200, (path.name, width, height)
    assert path.stat().st_size > 5_000  # drawn, not blank


class Tables(HTMLParser):
    """The text of every cell, per row, of the table with class "evaluation"."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self._in_eval = self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class") == "evaluation":
            self._in_eval = True
        elif tag == "tr" and self._in_eval:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_eval:
            self._in_cell = True
            self.rows[-1].append("")
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_eval = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data


def parse(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The hand-made report, rendered once: (its directory, the HTML)."""
    out = tmp_path_factory.mktemp("report")
    path = render_report(hand_made(), out)
    assert path == out / REPORT
    return out, path.read_text()


def test_report_draws_every_chart_as_a_png_and_links_it(rendered: tuple[Path, str]) -> None:
    out, html = rendered
    for name in CHARTS:
        assert_sensible_png(out / name)
    assert sorted(parse(html).images) == sorted(CHARTS)


def test_report_states_title_source_period_and_summary_figures(
    rendered: tuple[Path, str],
) -> None:
    html = rendered[1]
    for text in (
        "<title>Pulse backtest of shop.jsonl</title>",
        "/data/shop.jsonl",
        "2026-01-01T00:00:00.000Z to 2026-03-01T00:00:00.000Z",
        "12,345",  # events
        "321",  # users
        "6: invalid_json 4, missing_field 2",  # dead letters by reason
        "churn warnings 15",
        "0.5 s",
        "How to read this",
        "silent 7 days",
        "Precision",
        "Recall",
        "Lead time",
    ):
        assert text in html, text


def test_evaluation_table_has_the_exact_figures_and_sample_sizes(
    rendered: tuple[Path, str],
) -> None:
    rows = parse(rendered[1]).rows
    assert rows[0][:5] == ["Tier", "Rule", "Warnings judged", "Came true", "Precision"]
    body = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert body[("overall", "Pulse")] == [
        "13", "8", "0.6154", "9", "7", "0.7778", "3.5", "2.25", "5.125",
    ]  # fmt: skip
    assert body[("overall", "silent 7 days")] == [
        "20", "11", "0.55", "9", "9", "1.0", "7.0", "7.0", "7.0",
    ]  # fmt: skip
    assert body[("gold", "Pulse")][:3] == ["3", "2", "0.6667"]
    # a tier the baseline never warned has no figures rather than made-up ones
    assert body[("gold", "silent 7 days")][2] == "n/a"
    # tiers in the policy's order (silver had nothing, so it has no rows)
    assert [r[0] for r in rows[1:]] == ["overall"] * 2 + ["bronze"] * 2 + ["gold"] * 2


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    data = hand_made()
    data["source"] = '<script>alert("x")</script>.jsonl'
    data["title"] = "Pulse backtest of <script>alert(1)</script>"
    data["summary"]["dead_letters"] = {"<img src=x onerror=alert(1)>": 1}
    assert data["evaluation"] is not None
    data["evaluation"]["pulse"]["per_tier"]["<b>vip</b>"] = score(1, 1, 1.0, 0, 0, None)
    html = render_report(data, tmp_path).read_text()
    assert "<script" not in html and "<b>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;.jsonl" in html
    assert "&lt;b&gt;vip&lt;/b&gt;" in html


def test_empty_history_renders_a_page_that_says_so(tmp_path: Path) -> None:
    html = render_report(empty(), tmp_path).read_text()
    assert "no events (empty history)" in html
    assert "No evaluation: the history is empty." in html
    assert "No warnings: no risk scores to show." in html
    assert "No full day of history" in html
    assert not any((tmp_path / name).exists() for name in CHARTS)
    assert parse(html).images == []


def test_no_warnings_leaves_out_only_the_risk_chart(tmp_path: Path) -> None:
    data = hand_made()
    data["risk_scores"] = []
    html = render_report(data, tmp_path).read_text()
    assert "No warnings" in html
    assert not (tmp_path / RISK_PNG).exists()
    for name in (POPULATIONS_PNG, WEEKLY_PNG, EVALUATION_PNG):
        assert_sensible_png(tmp_path / name)


def test_a_rerun_removes_charts_the_new_page_does_not_show(tmp_path: Path) -> None:
    render_report(hand_made(), tmp_path)
    render_report(empty(), tmp_path)
    assert not any((tmp_path / name).exists() for name in CHARTS)


def test_a_history_no_longer_than_the_horizon_is_flagged(tmp_path: Path) -> None:
    data = copy.deepcopy(hand_made())
    assert data["evaluation"] is not None
    data["evaluation"]["horizon_days"] = 60
    html = render_report(data, tmp_path).read_text()
    assert "Pulse&#x27;s warnings judged: 13 of 15 (2 left out" in html
    assert "precision is 0 by construction" in html


@pytest.fixture(scope="module")
def sample_replay(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportData, Path]:
    out = tmp_path_factory.mktemp("replay")
    data = run_backtest(SAMPLE, out, Policy(), horizon_days=14, baseline_days=7, progress=False)
    return data, out


def test_replay_of_the_sample_renders_the_report(sample_replay: tuple[ReportData, Path]) -> None:
    data, out = sample_replay
    html = (out / REPORT).read_text()
    for name in CHARTS:
        assert_sensible_png(out / name)
    assert sorted(parse(html).images) == sorted(CHARTS)
    ev = data["evaluation"]
    assert ev is not None
    rows = {(r[0], r[1]): r[2:] for r in parse(html).rows[1:]}
    pulse, base = ev["pulse"]["overall"], ev["baseline"]["overall"]
    assert rows[("overall", "Pulse")][:6] == [
        str(pulse["warned"]),
        str(pulse["true_positives"]),
        str(pulse["precision"]),
        str(pulse["churned"]),
        str(pulse["caught"]),
        str(pulse["recall"]),
    ]
    assert rows[("overall", "silent 7 days")][2] == str(base["precision"])
    assert f"{data['summary']['events']:,}" in html
    assert "sample-events.jsonl" in html
