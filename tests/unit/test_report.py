"""The backtest report: report.html and its PNG charts, from hand-made data and a real replay."""

from __future__ import annotations

import copy
import struct
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from string import Template

import pytest

from streams.core.policy import DEFAULT_SEGMENTS, Policy
from streams.offline.backtest import run_backtest
from streams.offline.evaluation import (
    Calibration,
    Decile,
    Evaluation,
    PrPoint,
    RuleScores,
    Spread,
)
from streams.offline.report import (
    CALIBRATION_PNG,
    CHARTS,
    EVALUATION_PNG,
    POPULATIONS_PNG,
    PR_PNG,
    REPORT,
    RISK_PNG,
    WEEKLY_PNG,
    RecallGroup,
    ReportData,
    RetentionCohort,
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
    delay: tuple[float | None, float | None, float | None] = (None, None, None),
    *,
    censored: int = 0,
    returned_later: float | None = None,
) -> Score:
    spread: Spread = {"median": delay[0], "p25": delay[1], "p75": delay[2]}
    return {
        "warned": warned,
        "true_positives": true_positives,
        "censored": censored,
        "before_judge_from": 0,
        "churned": churned,
        "caught": caught,
        "precision": precision,
        "recall": recall,
        "came_back_within_horizon": None if precision is None else round(1 - precision, 4),
        "returned_later": returned_later,
        "lead_days": {"median": lead[0], "p25": lead[1], "p75": lead[2]},
        "delay_days": spread,
        "lead_time_days": spread,
    }


def rule(days: float, overall: Score, per_tier: dict[str, Score]) -> RuleScores:
    return {"rule": f"silent {days:g} days", "silent_days": days, "overall": overall,
            "per_tier": per_tier}  # fmt: skip


def deciles(pairs: list[tuple[float, float]], n: int = 30) -> Calibration:
    groups: list[Decile] = [
        {"group": g + 1, "n": n, "predicted": p, "observed": o, "gap": round(o - p, 4)}
        for g, (p, o) in enumerate(pairs)
    ]
    worst = max(abs(o - p) for p, o in pairs)
    return {"n": n * len(pairs), "groups": groups, "max_abs_gap": round(worst, 4)}


def pr_point(threshold: float, warnings: int, precision: float, recall: float) -> PrPoint:
    return {
        "threshold": threshold,
        "warnings": warnings,
        "precision": precision,
        "recall": recall,
        "lead_median_days": round(10 * (1 - threshold), 3),
        "delay_median_days": round(4 + 10 * threshold, 3),
        "operating": threshold == 0.6,
    }


def hand_evaluation() -> Evaluation:
    silent7 = rule(
        7,
        score(20, 11, 0.55, 9, 9, 1.0, (7.0, 7.0, 7.0), (7.0, 7.0, 7.0), returned_later=0.4),
        {"bronze": score(20, 11, 0.55, 9, 9, 1.0, (7.0, 7.0, 7.0), (7.0, 7.0, 7.0))},
    )
    silent30 = rule(30, score(6, 5, 0.8333, 9, 0, 0.0), {"bronze": score(6, 5, 0.8333, 9, 0, 0.0)})
    return {
        "horizon_days": 14,
        "judge_from": "2026-01-15T00:00:00.000Z",
        "end": "2026-03-01T00:00:00.000Z",
        "pulse": {
            "overall": score(
                13,
                8,
                0.6154,
                9,
                7,
                0.7778,
                (10.5, 8.875, 11.75),
                (3.5, 2.25, 5.125),
                censored=2,
                returned_later=0.3077,
            ),
            "per_tier": {
                "bronze": score(10, 6, 0.6, 7, 5, 0.7143, (11.0, 10.0, 12.0), (3.0, 2.0, 4.0)),
                "gold": score(3, 2, 0.6667, 2, 2, 1.0, (7.5, 7.0, 8.0), (6.5, 6.0, 7.0)),
            },
        },  # fmt: skip
        "rules": [silent7, silent30],
        "baseline": silent7,
        "censoring": {
            "warnings_censored": 2,
            "warnings_before_judge_from": 4,
            "churns_before_judge_from": 5,
            "silences_open_at_end": 11,
        },
        "stage_quality": {
            "churned": {"transitions": 8, "returned": 2, "share": 0.25},
            "dormant": {"transitions": 12, "returned": 9, "share": 0.75},
        },
        "auc": {
            "at_warnings": {"auc": 0.6125, "positives": 8, "negatives": 5},
            "at_silence": {"auc": 0.7042, "positives": 11, "negatives": 9},
            "silence_rule": "silent 7 days",
            "at_snapshot": {"auc": 0.8123, "positives": 180, "negatives": 120},
        },
        "snapshot": {
            "at": "2026-01-15T00:00:00.000Z",
            "users": 300,
            "calibration": deciles([(0.05 + g * 0.1, 0.1 * g) for g in range(10)]),
        },
        "calibration_at_warnings": deciles([(0.55, 0.5), (0.7, 0.75)], n=6),
        "pr_curve": {
            "operating_threshold": 0.6,
            "operating_rule": "P0 >= 0.6 at 14 days of silence",
            "churns": 9,
            "points": [
                pr_point(t, w, p, r)
                for t, w, p, r in (
                    (0.2, 30, 0.4, 1.0),
                    (0.4, 20, 0.55, 0.8889),
                    (0.6, 14, 0.6429, 0.7778),
                    (0.8, 6, 0.8333, 0.3333),
                )
            ],
        },  # fmt: skip
        "missing": {},
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
        "evaluation": hand_evaluation(),
        "risk_scores": [0.1, 0.2333, 0.25, 0.4, 0.41, 0.9, 0.35, 0.3, 0.2, 0.15, 0.5, 0.6, 0.7],
        "tiers": ["bronze", "silver", "gold"],
        "retention": {
            "days": 3,
            "weeks": 2,
            "day": [
                cohort("2026-01-05", "2026-01-05", 40, [40, 20, 10, 8], [40, 25, 12, 8]),
                cohort("2026-01-06", "2026-01-06", 10, [10, 6, 3, None], [10, 7, 3, None]),
            ],
            "week": [
                cohort("2026-W02", "2026-01-05", 1200, [1200, 300, 150], [1200, 400, 150]),
                cohort("2026-W03", "2026-01-12", 900, [900, 250, None], [900, 250, None]),
            ],
        },
        "rfm": {
            "window_days": 365,
            "segments": list(DEFAULT_SEGMENTS.values()),
            "final": {n: 10 * i for i, n in enumerate(DEFAULT_SEGMENTS.values())},
            "changes_to": {"important_value": 12, "none": 3},
            "daily": [
                {"day": f"2026-01-{d:02d}", "segments": {"important_value": d, "general_value": 5}}
                for d in range(1, 29)
            ],
        },
    }


def cohort(
    label: str, start: str, size: int, active: list[int | None], still: list[int | None]
) -> RetentionCohort:
    def rates(values: list[int | None]) -> list[float | None]:
        return [None if v is None else round(v / size, 4) for v in values]

    return {"cohort": label, "start": start, "size": size, "active": active,
            "active_rate": rates(active), "still_active": still,
            "still_active_rate": rates(still)}  # fmt: skip


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
    """The text of every cell, per row, of every table with a class; `rows` of "evaluation"."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: list[list[str]] | None = None
        self._in_cell = False

    @property
    def rows(self) -> list[list[str]]:
        return self.tables.get("evaluation", [])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("class"):
            self._table = self.tables.setdefault(a["class"] or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._in_cell = True
            self._table[-1].append("")
        elif tag == "img":
            self.images.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._table is not None:
            self._table[-1][-1] += data


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
        "silent 30 days",
        "Precision",
        "Recall",
        "Lead",
        "Delay",
        "Judged period",
        "from 2026-01-15T00:00:00.000Z (J)",
    ):
        assert text in html, text


def test_evaluation_table_has_the_exact_figures_and_sample_sizes(
    rendered: tuple[Path, str],
) -> None:
    rows = parse(rendered[1]).rows
    assert rows[0][:5] == ["Tier", "Rule", "Warnings judged", "Came true", "Precision"]
    body = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert rows[0][8:] == ["Lead median (days)", "p25", "p75", "Delay median (days)", "p25", "p75"]
    assert body[("overall", "Pulse")] == [
        "13", "8", "0.6154", "9", "7", "0.7778", "10.5", "8.875", "11.75", "3.5", "2.25", "5.125",
    ]  # fmt: skip
    assert body[("overall", "silent 7 days")] == [
        "20", "11", "0.55", "9", "9", "1.0", "7.0", "7.0", "7.0", "7.0", "7.0", "7.0",
    ]  # fmt: skip
    assert body[("gold", "Pulse")][:3] == ["3", "2", "0.6667"]
    # a tier the baseline never warned has no figures rather than made-up ones
    assert body[("gold", "silent 7 days")][2] == "n/a"
    # tiers in the policy's order (silver had nothing, so it has no rows)
    assert [r[0] for r in rows[1:]] == ["overall"] * 3 + ["bronze"] * 3 + ["gold"] * 3
    assert [r[1] for r in rows[1:4]] == ["Pulse", "silent 7 days", "silent 30 days"]


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


def test_stylesheet_and_page_skeleton_are_package_data_the_page_is_built_from(
    rendered: tuple[Path, str],
) -> None:
    templates = resources.files("streams.offline") / "templates"
    css = (templates / "report.css").read_text(encoding="utf-8")
    skeleton = Template((templates / "report.html").read_text(encoding="utf-8"))
    assert skeleton.is_valid()
    assert set(skeleton.get_identifiers()) == {
        "title", "css", "source", "period", "generated_at", "summary", "how_to_read", "sections",
    }  # fmt: skip
    html = rendered[1]
    assert html.startswith("<!doctype html>\n") and html.endswith("</body>\n</html>\n")
    assert f"<style>\n{css}</style>" in html and "td.num" in css


def test_dollar_signs_in_title_and_source_are_kept_as_text(tmp_path: Path) -> None:
    data = hand_made()
    data["title"] = "Costs in $USD ${css} $$"
    data["source"] = "/data/$HOME/shop.jsonl"
    html = render_report(data, tmp_path).read_text()
    assert "<title>Costs in $USD ${css} $$</title>" in html
    assert "<code>/data/$HOME/shop.jsonl</code>" in html


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
    data["evaluation"]["horizon_days"] = 60  # the judged period is 45 days
    html = render_report(data, tmp_path).read_text()
    assert "Pulse&#x27;s warnings judged: 13 of 19 (2 censored" in html
    assert "precision is 0 by construction" in html


@pytest.fixture(scope="module")
def sample_replay(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportData, Path]:
    out = tmp_path_factory.mktemp("replay")
    data = run_backtest(SAMPLE, out, Policy(), horizon_days=14, baseline_days=7, progress=False)
    return data, out


def test_replay_of_the_sample_renders_the_report(sample_replay: tuple[ReportData, Path]) -> None:
    data, out = sample_replay
    html = (out / REPORT).read_text()
    # no churn model in this replay: no calibration or precision-recall chart
    drawn = [name for name in CHARTS if name not in (CALIBRATION_PNG, PR_PNG)]
    for name in drawn:
        assert_sensible_png(out / name)
    assert sorted(parse(html).images) == sorted(drawn)
    assert "No precision-recall curve: no churn model was loaded" in html
    assert "cannot be measured on this history" in html
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


def test_headline_table_compares_pulse_with_every_silence_rule(
    rendered: tuple[Path, str],
) -> None:
    rows = parse(rendered[1]).tables["headline"]
    assert rows[0][0] == "Rule" and "Came back within 14 days" in rows[0]
    body = {r[0]: r[1:] for r in rows[1:]}
    assert list(body) == ["Pulse", "silent 7 days", "silent 30 days"]
    # judged, precision, churns, caught, recall, lead, delay, came back, returned later
    assert body["Pulse"] == [
        "13", "0.6154", "9", "7", "0.7778", "10.5", "3.5", "38.5%", "30.8%",
    ]  # fmt: skip
    assert body["silent 30 days"][5:7] == ["n/a", "n/a"]  # caught nothing: no lead, no delay


def test_auc_calibration_and_pr_sections_show_their_figures(rendered: tuple[Path, str]) -> None:
    out, html = rendered
    tables = parse(html).tables
    auc = {r[0].split(",")[0]: r[1:] for r in tables["auc"][1:]}
    assert auc["at Pulse's judged warnings"] == ["0.6125", "8", "5"]
    assert auc['at the "silent 7 days" moments'] == ["0.7042", "11", "9"]
    assert auc["at the snapshot 2026-01-15T00:00:00.000Z"] == ["0.8123", "180", "120"]
    calibration = tables["calibration"]
    assert calibration[1] == ["1", "30", "0.05", "0.0", "-0.0500"]
    assert len(calibration) == 1 + 10 + 1 + 2  # two tables: the snapshot's, the warnings'
    assert "Largest gap: 0.05 over 300." in html
    pr = {r[0]: r[1:] for r in tables["pr"][1:]}
    assert pr["0.6 (operating)"] == ["14", "0.6429", "0.7778", "4.0", "10.0"]
    assert list(pr) == ["0.2", "0.4", "0.6 (operating)", "0.8"]
    for name in (CALIBRATION_PNG, PR_PNG):
        assert_sensible_png(out / name)


def test_censoring_and_stage_quality_are_stated(rendered: tuple[Path, str]) -> None:
    html = rendered[1]
    for text in (
        "13 of 19 (2 censored",
        "4 before the judged period",
        "5 that began before the judged period",
        "11 silences still open at the end",
        "lower bounds",
    ):
        assert text in html, text
    stages = {r[0]: r[1:] for r in parse(html).tables["stages"][1:]}
    assert stages == {"churned": ["8", "2", "25.0%"], "dormant": ["12", "9", "75.0%"]}


def test_without_a_model_the_report_says_why_and_draws_no_model_chart(tmp_path: Path) -> None:
    data = hand_made()
    evaluation = data["evaluation"]
    assert evaluation is not None
    why = "no churn model was loaded (replay with --churn-model)"
    evaluation["snapshot"] = evaluation["calibration_at_warnings"] = None
    evaluation["pr_curve"] = None
    evaluation["missing"] = {"snapshot": why, "calibration": why, "pr_curve": why}
    evaluation["auc"]["at_silence"] = evaluation["auc"]["at_snapshot"] = None
    html = render_report(data, tmp_path).read_text()
    assert f"No precision-recall curve: {why}." in html
    assert f"No calibration: {why}." in html
    assert not (tmp_path / CALIBRATION_PNG).exists() and not (tmp_path / PR_PNG).exists()
    auc = parse(html).tables["auc"]
    assert auc[2][1] == "n/a" and why in auc[2][3]
    assert_sensible_png(tmp_path / EVALUATION_PNG)


def test_a_replay_report_says_the_uplift_cannot_be_measured(tmp_path: Path) -> None:
    data = hand_made()
    group: RecallGroup = {
        "warned": 9,
        "open": 1,
        "judged": 8,
        "reactivated": 2,
        "not_reactivated": 6,
        "rate": 0.25,
    }
    data["recall"] = {
        "attribution_window_days": 14,
        "holdout_fraction": 0.1,
        "rows": [
            {
                "tier": None,
                "reason": None,
                "treated": group,
                "holdout": group,
                "uplift": 0.0,
                "ci_low": -0.3,
                "ci_high": 0.3,
            }
        ],
        "days_to_return": {"treated": {"returns": 2, "median": 3.0}},
    }
    html = render_report(data, tmp_path).read_text()
    assert "A replay contacts nobody" in html and "cannot be measured" in html
    recall = parse(html).tables["recall"]
    assert "Uplift (pp)" not in recall[0]
    assert recall[1] == ["all", "all", "9", "1", "8", "2", "25.0%", "9", "1", "8", "2", "25.0%"]


def test_report_shows_the_retention_triangle_with_its_figures(rendered: tuple[Path, str]) -> None:
    html = rendered[1]
    assert "Retention cohorts" in html and "weeks 0 to 2" in html
    table = parse(html).tables["retention"]
    assert table == [
        ["Cohort", "Users", "0", "1", "2"],
        ["2026-W02", "1,200", "1,200", "300", "150"],
        ["2026-W03", "900", "900", "250", ""],
    ]


def test_a_replay_reports_its_retention_cohorts(tmp_path: Path) -> None:
    data = run_backtest(SAMPLE, tmp_path, Policy(), progress=False)
    retention = data["retention"]
    assert (retention["days"], retention["weeks"]) == (30, 26)
    weeks = retention["week"]
    assert sum(w["size"] for w in weeks) == sum(d["size"] for d in retention["day"]) > 0
    assert all(w["active"][0] == w["size"] for w in weeks)
    assert (tmp_path / "retention.png").exists() and (tmp_path / "retention-curves.png").exists()


def test_report_shows_the_rfm_segments(rendered: tuple[Path, str]) -> None:
    html = rendered[1]
    assert "RFM value segments" in html
    table = parse(html).tables["rfm"]
    assert table[0] == ["Segment", "Users at the end", "Moves into it"]
    assert table[1] == ["important_value", "0", "12"]
    assert table[2] == ["important_development", "10", "0"]
    assert "left the window: 3 moves" in html
