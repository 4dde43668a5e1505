"""The backtest report: `report.html` and its PNG charts, rendered from a replay's report data.

The page is static (no script, no network): the charts are PNG files next to it, drawn with
matplotlib's Agg renderer, and every figure is also written out as text for exact reading.
The stylesheet and the page skeleton are package data in streams/offline/templates/.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from statistics import median
from string import Template
from typing import NotRequired, TypedDict

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streams.core.eventtime import DAY_MS, parse_ts
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind

# The evaluation's shapes live with the code that builds them. Those that were defined here
# before are imported under their own names, so `from streams.offline.report import Score`
# keeps working.
from streams.offline.evaluation import Auc, Calibration, PrCurve, StageQuality
from streams.offline.evaluation import BaselineScores as BaselineScores
from streams.offline.evaluation import Evaluation as Evaluation
from streams.offline.evaluation import LeadTime as LeadTime
from streams.offline.evaluation import Score as Score
from streams.offline.evaluation import Scores as Scores

REPORT = "report.html"
POPULATIONS_PNG = "populations.png"
WEEKLY_PNG = "weekly.png"
EVALUATION_PNG = "evaluation.png"
RISK_PNG = "risk-scores.png"
CALIBRATION_PNG = "calibration.png"
PR_PNG = "precision-recall.png"
RETENTION_PNG = "retention.png"
RETENTION_CURVES_PNG = "retention-curves.png"
RFM_PNG = "rfm-segments.png"
CHARTS = (
    POPULATIONS_PNG,
    WEEKLY_PNG,
    EVALUATION_PNG,
    CALIBRATION_PNG,
    PR_PNG,
    RISK_PNG,
    RETENTION_PNG,
    RETENTION_CURVES_PNG,
    RFM_PNG,
)


class Summary(TypedDict):
    events: int
    duplicates: int
    users: int
    dead_letters: dict[str, int]  # reason -> records
    outputs: dict[str, int]  # output kind -> count
    first_event: str | None  # RFC 3339, None for an empty history
    last_event: str | None
    seconds: float  # reading and replaying, not writing


class Population(TypedDict):
    day: str  # YYYY-MM-DD, counted at the end of that UTC day
    stages: dict[str, int]  # stage -> users


class Week(TypedDict):
    week: str  # the Monday (YYYY-MM-DD) the week starts on
    warnings: int
    tier_changes: int
    reactivations: int


class RecallGroup(TypedDict):
    warned: int
    open: int  # attribution window still running
    judged: int  # window ended: the rate's sample size
    reactivated: int
    not_reactivated: int
    rate: float | None  # reactivated / judged; None when nothing was judged


class RecallRow(TypedDict):
    """Treated against holdout in one slice (streams.core.recall.comparison_doc)."""

    tier: str | None  # None: every tier
    reason: str | None  # None: every warning reason
    treated: RecallGroup
    holdout: RecallGroup
    uplift: float | None  # treated rate - holdout rate
    ci_low: float | None  # its 95% interval (Newcombe's hybrid score)
    ci_high: float | None


class DaysToReturn(TypedDict):
    returns: int
    median: float | None


class RecallReport(TypedDict):
    attribution_window_days: float
    holdout_fraction: float
    rows: list[RecallRow]  # overall, per tier, per reason, per tier and reason
    days_to_return: dict[str, DaysToReturn]  # group -> the recall_reactivated outputs
    # True when the history comes from a system whose senders contacted the treated group
    # (`pulse replay --contacted`): only then does the uplift measure the recall.
    contacted: NotRequired[bool]


class RetentionCohort(TypedDict):
    """One cohort's row (streams.core.retention.cohort_doc; the API's shape too)."""

    cohort: str  # 2026-11-22 (day) or 2026-W48 (ISO week)
    start: str  # its first day
    size: int
    active: list[int | None]  # index k: users active in period k (None: not reached)
    active_rate: list[float | None]
    still_active: list[int | None]  # index k: users active in period k or later
    still_active_rate: list[float | None]


class RetentionReport(TypedDict):
    days: int  # the policy's retention_days: periods 0..days
    weeks: int  # retention_weeks
    day: list[RetentionCohort]  # every day cohort, oldest first
    week: list[RetentionCohort]  # every ISO-week cohort, oldest first


class RfmDay(TypedDict):
    day: str  # YYYY-MM-DD, counted at the end of that UTC day
    segments: dict[str, int]  # segment -> users (segments with users)


class RfmReport(TypedDict):
    window_days: int
    segments: list[str]  # the policy's names, in its order
    final: dict[str, int]  # users per segment at the end of the replay
    changes_to: dict[str, int]  # rfm_segment_changed outputs per new segment ("none": left)
    daily: list[RfmDay]


class ReportData(TypedDict):
    """What streams.offline.backtest.report_data builds; also written as summary.json."""

    title: str
    source: str
    generated_at: str
    summary: Summary
    populations: list[Population]
    weekly: list[Week]
    evaluation: Evaluation | None  # None when the history was empty
    risk_scores: list[float]  # of every warning, in [0, 1]
    tiers: NotRequired[list[str]]  # the policy's tiers, lowest first, to order the per-tier rows
    recall: NotRequired[RecallReport]  # holdout against treated (streams.core.recall)
    retention: NotRequired[RetentionReport]  # cohorts (streams.core.retention)
    rfm: NotRequired[RfmReport]  # RFM value segments (streams.core.rfm)


_STAGE_COLOURS = {
    Stage.NEW: "#9ecae1",
    Stage.ACTIVE: "#31a354",
    Stage.AT_RISK: "#fd8d3c",
    Stage.DORMANT: "#969696",
    Stage.CHURNED: "#de2d26",
    Stage.REACTIVATED: "#756bb1",
}
_PULSE_COLOUR = "#3182bd"
# The silence rules in greys, darkest for the shortest silence.
_RULE_COLOURS = ("#525252", "#737373", "#969696", "#bdbdbd", "#d9d9d9")
_SNAPSHOT_COLOUR = "#de2d26"
_KIND_LABELS = {
    Kind.LIFECYCLE: "stage changes",
    Kind.WARNING: "churn warnings",
    Kind.TIER: "tier changes",
    Kind.RECALL: "recall reactivations",
}
# 100 dpi keeps the files small and renders in tens of milliseconds; the HTML shows them at
# their natural size, so they stay sharp.
_DPI = 100
_WIDE = (10.0, 4.2)  # inches: the time-series charts
_EVAL = (10.0, 7.6)  # four panels, two by two: one bar per rule, every tier
_CALIBRATION = (7.5, 6.2)
_PR = (8.5, 6.5)
_RISK = (8.0, 4.0)
_RETENTION = (11.0, 5.6)  # two heat maps side by side
_CURVES = (11.0, 4.4)
# The heat maps and the text table show the latest cohorts; summary.json holds them all.
_HEAT_WEEKS = 26
_HEAT_DAYS = 30
_CURVE_COHORTS = 8


def _e(value: object) -> str:
    """Any value as escaped HTML text (source paths, tier and reason names come from users)."""
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _fig(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly, whatever backend the process has configured
    return fig


def _save(fig: Figure, path: Path) -> None:
    # No creation time in the metadata, so the same data gives the same bytes.
    fig.savefig(path, format="png", metadata={"Software": None})


def _finish_stack(fig: Figure, ax: Axes, title: str, path: Path) -> None:
    """Title, axis and legend of a stacked area over days, then save it."""
    ax.set_title(title)
    ax.set_ylabel("users")
    ax.margins(x=0)
    ax.grid(axis="y", alpha=0.3)
    # Reversed, so the legend reads top-down like the stack.
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.autofmt_xdate()
    _save(fig, path)


def _stage_order(populations: Sequence[Population]) -> list[str]:
    """Lifecycle order, then any stage the data has that this version does not know."""
    seen = {s for p in populations for s in p["stages"]}
    return [s for s in Stage.ALL if s in seen] + sorted(seen - set(Stage.ALL))


def _tier_order(data: ReportData, evaluation: Evaluation) -> list[str]:
    seen = set(evaluation["pulse"]["per_tier"])
    for rule in evaluation["rules"]:
        seen |= set(rule["per_tier"])
    known = [t for t in data.get("tiers", []) if t in seen]
    return known + sorted(seen - set(known))


# -- charts ------------------------------------------------------------------------------


def _populations_chart(populations: Sequence[Population], path: Path) -> None:
    stages = _stage_order(populations)
    days = np.array([p["day"] for p in populations], dtype="datetime64[D]")
    fig = _fig(_WIDE)
    ax = fig.add_subplot()
    ax.stackplot(
        days,
        *[[p["stages"].get(s, 0) for p in populations] for s in stages],
        labels=stages,
        colors=[_STAGE_COLOURS.get(s, "#636363") for s in stages],
        alpha=0.9,
    )
    _finish_stack(fig, ax, "Users per stage at the end of each day", path)


def _every_nth_label(ax: Axes, labels: Sequence[str], most: int = 16) -> None:
    step = max(1, -(-len(labels) // most))
    ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=45, ha="right")


def _weekly_chart(weekly: Sequence[Week], path: Path) -> None:
    fig = _fig(_WIDE)
    ax = fig.add_subplot()
    series = (
        ("churn warnings", [w["warnings"] for w in weekly], _STAGE_COLOURS[Stage.AT_RISK]),
        ("tier changes", [w["tier_changes"] for w in weekly], _PULSE_COLOUR),
        ("reactivations", [w["reactivations"] for w in weekly], _STAGE_COLOURS[Stage.REACTIVATED]),
    )
    width = 0.8 / len(series)
    for i, (label, counts, colour) in enumerate(series):
        xs = [x + (i - 1) * width for x in range(len(weekly))]
        ax.bar(xs, counts, width, label=label, color=colour)
    _every_nth_label(ax, [w["week"] for w in weekly])
    ax.set_title("Outputs per week")
    ax.set_xlabel("week starting on Monday (UTC)")
    ax.set_ylabel("outputs")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def _rules(evaluation: Evaluation) -> list[tuple[str, Scores, str]]:
    """(name, scores, colour) of Pulse, then of each silence rule."""
    rules: list[tuple[str, Scores, str]] = [("Pulse", evaluation["pulse"], _PULSE_COLOUR)]
    for i, rule in enumerate(evaluation["rules"]):
        rules.append((rule["rule"], rule, _RULE_COLOURS[i % len(_RULE_COLOURS)]))
    return rules


def _judged_period(evaluation: Evaluation) -> str:
    start = evaluation["judge_from"]
    return f"judged from {start[:10]}" if start else "the whole history judged"


def _evaluation_chart(evaluation: Evaluation, path: Path) -> None:
    # Every tier only: with four rules and several tiers, per-tier bars would not be readable
    # (the per-tier figures are in the table under the chart).
    rules = _rules(evaluation)
    fig = _fig(_EVAL)
    panels = fig.subplots(2, 2).flat
    metrics = (
        ("precision", "Precision", "share of judged warnings that came true"),
        ("recall", "Recall", "share of judged churns caught"),
        ("lead", "Lead: time left to act", "days before the horizon closes"),
        ("delay", "Delay since the last activity", "days from last activity to warning"),
    )
    for ax, (metric, title, ylabel) in zip(panels, metrics, strict=True):
        top = 0.0
        for x, (_, scores, colour) in enumerate(rules):
            value, label, spread = _metric(scores["overall"], metric)
            if value is None:
                ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=8, color="#636363")
                continue
            yerr = None
            label_at = value
            if spread is not None:
                yerr = [[value - spread[0]], [spread[1] - value]]
                label_at = max(value, spread[1])  # above the whisker, not behind it
            ax.bar(
                x,
                value,
                0.7,
                color=colour,
                yerr=yerr,
                error_kw={"ecolor": "#252525", "capsize": 3, "linewidth": 1},
            )
            top = max(top, label_at)
            ax.text(x, label_at, label, ha="center", va="bottom", fontsize=7)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(len(rules)), [name for name, _, _ in rules], rotation=20, ha="right")
        ax.set_xlim(-0.6, len(rules) - 0.4)
        ax.set_ylim(0, 1.2 if metric in ("precision", "recall") else max(top, 1.0) * 1.25)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Pulse against the silence rules, every tier (horizon {evaluation['horizon_days']:g}"
        f" days, {_judged_period(evaluation)})\nwhiskers: 25th to 75th percentile"
    )
    _save(fig, path)


def _score(scores: Scores, group: str) -> Score | None:
    return scores["overall"] if group == "overall" else scores["per_tier"].get(group)


def _metric(
    score: Score | None, metric: str
) -> tuple[float | None, str, tuple[float, float] | None]:
    """(bar height, label over it, p25-p75 whiskers) of one metric of one tally."""
    if score is None:
        return None, "", None
    if metric == "precision":
        p = score["precision"]
        return p, "" if p is None else f"{p:.2f}\n{score['true_positives']}/{score['warned']}", None
    if metric == "recall":
        r = score["recall"]
        return r, "" if r is None else f"{r:.2f}\n{score['caught']}/{score['churned']}", None
    days = score["lead_days"] if metric == "lead" else score["delay_days"]
    m, lo, hi = days["median"], days["p25"], days["p75"]
    if m is None:
        return None, "", None
    spread = (lo, hi) if lo is not None and hi is not None else None
    return m, f"{m:.1f}\nn={score['caught']}", spread


def _calibration_chart(
    series: Sequence[tuple[str, Calibration, str, str]], horizon: float, path: Path
) -> None:
    """Mean predicted against observed per group, one line per (label, table, colour, marker)."""
    fig = _fig(_CALIBRATION)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#969696", linewidth=1, label="perfect")
    for label, table, colour, marker in series:
        groups = table["groups"]
        ax.plot(
            [g["predicted"] for g in groups],
            [g["observed"] for g in groups],
            marker=marker,
            color=colour,
            label=f"{label} (n={table['n']:,}, largest gap {_fmt(table['max_abs_gap'])})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_title("Calibration: predicted against observed, by decile of the prediction")
    ax.set_xlabel(f"mean predicted P(no activity within {horizon:g} days)")
    ax.set_ylabel(f"observed share with no activity within {horizon:g} days")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def _pr_chart(curve: PrCurve, evaluation: Evaluation, path: Path) -> None:
    fig = _fig(_PR)
    ax = fig.add_subplot()
    # (threshold, recall, precision, operating) of the thresholds that gave judged warnings
    points = [
        (p["threshold"], p["recall"], p["precision"], p["operating"])
        for p in curve["points"]
        if p["precision"] is not None and p["recall"] is not None
    ]
    ax.plot(
        [r for _, r, _, _ in points],
        [p for _, _, p, _ in points],
        marker="o",
        markersize=3,
        color=_SNAPSHOT_COLOUR,
        label="warn when P0 reaches the threshold (0.05 to 0.95)",
    )
    for threshold, recall, precision, operating in points:
        # Every other threshold labelled: all nineteen would overlap where the curve bunches.
        if round(threshold * 20) % 2 == 0 and not operating:
            ax.annotate(
                f"{threshold:.1f}",
                (recall, precision),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=_SNAPSHOT_COLOUR,
            )
        if operating:
            ax.plot(
                recall,
                precision,
                marker="*",
                markersize=16,
                color=_SNAPSHOT_COLOUR,
                markeredgecolor="#252525",
                linestyle="none",
                label=f"operating: {curve['operating_rule']}",
            )
    pulse = evaluation["pulse"]["overall"]
    if pulse["precision"] is not None and pulse["recall"] is not None:
        ax.plot(
            pulse["recall"],
            pulse["precision"],
            marker="X",
            markersize=11,
            color=_PULSE_COLOUR,
            linestyle="none",
            label="Pulse's warnings in the replay",
        )
    for i, rule in enumerate(evaluation["rules"]):
        o = rule["overall"]
        if o["precision"] is None or o["recall"] is None:
            continue
        ax.plot(
            o["recall"],
            o["precision"],
            marker="D",
            markersize=7,
            color=_RULE_COLOURS[i % len(_RULE_COLOURS)],
            markeredgecolor="#252525",
            linestyle="none",
        )
        ax.annotate(
            rule["rule"],
            (o["recall"], o["precision"]),
            textcoords="offset points",
            xytext=(6, -10),
            fontsize=8,
        )
    ax.set_xlim(-0.02, 1.05)  # room for the markers on the edges
    ax.set_ylim(-0.02, 1.05)
    ax.set_title("Precision against recall: the risk score as a warning rule")
    ax.set_xlabel(f"recall (share of the {curve['churns']:,} judged churns caught)")
    ax.set_ylabel("precision (share of judged warnings that came true)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, title="diamonds: the silence rules", title_fontsize=8)
    _save(fig, path)


def _risk_chart(scores: Sequence[float], path: Path) -> None:
    fig = _fig(_RISK)
    ax = fig.add_subplot()
    ax.hist(
        scores,
        bins=[i / 20 for i in range(21)],
        color=_STAGE_COLOURS[Stage.AT_RISK],
        edgecolor="white",
    )
    mid = median(scores)
    ax.axvline(mid, color="#252525", linestyle="--", linewidth=1, label=f"median {mid:.2f}")
    ax.set_xlim(0, 1)
    ax.set_title(f"Risk score of the {len(scores):,} churn warnings")
    ax.set_xlabel("risk score when warned (0 = no risk, 1 = highest)")
    ax.set_ylabel("warnings")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    _save(fig, path)


def _heat(ax: Axes, rows: Sequence[RetentionCohort], unit: str) -> None:
    n = max(len(r["active_rate"]) for r in rows)
    grid = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        for k, v in enumerate(r["active_rate"]):
            if v is not None:
                grid[i, k] = v
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="none")
    step = max(1, -(-len(rows) // 20))
    ax.set_yticks(
        range(0, len(rows), step), [f"{r['cohort']} ({r['size']:,})" for r in rows][::step]
    )
    ax.set_xlabel(f"{unit}s after the cohort's {unit}")
    ax.set_title(f"{unit.capitalize()} cohorts (users): share active in {unit} k")
    ax.figure.colorbar(image, ax=ax, fraction=0.05)


def _retention_chart(retention: RetentionReport, path: Path) -> None:
    fig = _fig(_RETENTION)
    weeks, days = retention["week"][-_HEAT_WEEKS:], retention["day"][-_HEAT_DAYS:]
    axes = fig.subplots(1, 2)
    _heat(axes[0], weeks, "week")
    _heat(axes[1], days, "day")
    _save(fig, path)


def _retention_curves(retention: RetentionReport, path: Path) -> None:
    fig = _fig(_CURVES)
    axes = fig.subplots(1, 2, sharey=True)
    rows = retention["week"][-_CURVE_COHORTS:]
    for ax, key, title in (
        (axes[0], "active_rate", "N-week retention: active in week k"),
        (axes[1], "still_active_rate", "Unbounded: active in week k or later"),
    ):
        for r in rows:
            values = [np.nan if v is None else v * 100 for v in r[key]]  # type: ignore[literal-required]
            ax.plot(range(len(values)), values, marker=".", label=r["cohort"])
        ax.set_title(title)
        ax.set_xlabel("weeks after the cohort's week")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of the cohort")
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="cohort")
    _save(fig, path)


_RFM_COLOURS = (
    "#08519c", "#3182bd", "#6baed6", "#bdd7e7", "#a63603", "#e6550d", "#fd8d3c", "#fdbe85",
)  # fmt: skip


def _rfm_chart(rfm: RfmReport, path: Path) -> None:
    names = rfm["segments"]
    days = np.array([d["day"] for d in rfm["daily"]], dtype="datetime64[D]")
    fig = _fig(_WIDE)
    ax = fig.add_subplot()
    ax.stackplot(
        days,
        *[[d["segments"].get(n, 0) for d in rfm["daily"]] for n in names],
        labels=names,
        colors=[_RFM_COLOURS[i % len(_RFM_COLOURS)] for i in range(len(names))],
        alpha=0.9,
    )
    title = f"Users per RFM segment at the end of each day ({rfm['window_days']}-day window)"
    _finish_stack(fig, ax, title, path)


# -- HTML --------------------------------------------------------------------------------

# The page's static parts: package data (pyproject.toml), read once at import. The files hold
# no comments, since the stylesheet goes into every page as is and string.Template has no
# comment syntax.
_TEMPLATES = resources.files("streams.offline") / "templates"
# Inlined, so the report stays one HTML file beside its PNGs.
_CSS = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
# $css is _CSS; $title, $source, $period, $generated_at, $summary, $how_to_read and $sections
# are HTML the code has already escaped.
_PAGE = Template((_TEMPLATES / "report.html").read_text(encoding="utf-8"))


def _img(name: str, alt: str, fig_size: tuple[float, float]) -> str:
    w, h = (round(v * _DPI) for v in fig_size)
    return f'<p><img src="{_e(name)}" alt="{_e(alt)}" width="{w}" height="{h}"></p>'


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _by_key(counts: dict[str, int], labels: dict[str, str] | None = None) -> str:
    parts = [f"{_e((labels or {}).get(k, k))} {_n(v)}" for k, v in sorted(counts.items()) if v]
    return ", ".join(parts) if parts else "none"


def _summary_html(data: ReportData) -> str:
    s = data["summary"]
    rate = f" ({_n(round(s['events'] / s['seconds']))} events/s)" if s["seconds"] > 0 else ""
    rows = (
        ("Events replayed", _n(s["events"])),
        ("Users", _n(s["users"])),
        ("Duplicates (same event id again, ignored)", _n(s["duplicates"])),
        (
            "Dead letters (invalid records)",
            f"{_n(sum(s['dead_letters'].values()))}: {_by_key(s['dead_letters'])}",
        ),
        ("Outputs", f"{_n(sum(s['outputs'].values()))}: {_by_key(s['outputs'], _KIND_LABELS)}"),
        ("Replay time (reading and replaying)", f"{_e(s['seconds'])} s{_e(rate)}"),
    )
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _how_to_read(evaluation: Evaluation | None) -> str:
    # The definitions of streams/offline/evaluation.py (its docstring), with this run's figures in.
    horizon = f"{evaluation['horizon_days']:g} days" if evaluation else "the churn horizon"
    start = evaluation["judge_from"] if evaluation else None
    period = (
        f"from {start} (J) to the end of the history"
        if start
        else "the whole history (no --judge-from was given)"
    )
    items = (
        (
            "Judged period",
            f"{period}. For an honest, out-of-sample test fit the churn model on the history "
            "up to a cut (pulse fit --until CUT) and replay with --judge-from CUT: nothing "
            "before the cut is judged.",
        ),
        (
            "Churn",
            f"an activity followed by more than {horizon} of silence (before the next "
            "activity, or before the history ends). It is judged when that activity falls in "
            "the judged period; churns that began before it are left out (left-censored), and "
            f"a silence that has not yet lasted {horizon} when the history ends is not a churn. "
            "Passive events such as points earned are not activity.",
        ),
        (
            "Precision",
            f"of the judged warnings (those in the judged period), the share that came true: "
            f"the user had no activity within {horizon} after the warning. A warning is left "
            f"out (censored) when the history ends less than {horizon} after it and the user "
            "was not back by then.",
        ),
        (
            "Recall",
            f"of the judged churns, the share that were caught: a warning fell within the "
            f"{horizon} of silence after the last activity.",
        ),
        (
            "Lead",
            f"for a caught churn, the days from the warning to the end of the {horizon} after "
            "the last activity: the time left to act before the user counts as churned. "
            "Median and middle half (25th to 75th percentile). More is better.",
        ),
        (
            "Delay",
            "for a caught churn, the days from the last activity to the warning.",
        ),
        (
            "Came back",
            f"of the judged warnings, the share whose user was active again within {horizon} "
            "(1 - precision), and the share active again at any time before the history ends.",
        ),
        (
            "Silence rules",
            'the fixed rules "silent N days": a warning to every user N days into any '
            "silence that lasts that long, judged in the same way.",
        ),
        (
            "Per tier",
            "a warning counts under the tier the user had when warned; a churn under the "
            "tier at the user's last activity.",
        ),
        (
            "ROC AUC",
            "the chance that a user who stayed away was scored above one who came back (ties "
            "count half): 0.5 is chance, 1 a perfect ranking.",
        ),
        (
            "Calibration",
            f"the predictions split into ten groups of equal size by rank; in each, the mean "
            f"predicted chance of no activity within {horizon} against the share observed. "
            "A calibrated model's groups lie on the diagonal.",
        ),
    )
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else _e(value)


def _censored_note(summary: Summary, evaluation: Evaluation) -> str:
    """What the history was too short (or too early) to judge, and why it matters."""
    horizon = evaluation["horizon_days"]
    c = evaluation["censoring"]
    judged = evaluation["pulse"]["overall"]["warned"]
    total = judged + c["warnings_censored"] + c["warnings_before_judge_from"]
    text = (
        f"Pulse's warnings judged: {_n(judged)} of {_n(total)} ({_n(c['warnings_censored'])} "
        f"censored: the history ends less than {horizon:g} days after them and the user was "
        f"not back; {_n(c['warnings_before_judge_from'])} before the judged period). Churns "
        f"left out: {_n(c['churns_before_judge_from'])} that began before the judged period, "
        f"and {_n(c['silences_open_at_end'])} silences still open at the end, shorter than "
        f"{horizon:g} days when the history ends."
    )
    start = evaluation["judge_from"] or summary["first_event"]
    last = summary["last_event"]
    span_days = (parse_ts(last) - parse_ts(start)) / DAY_MS if start and last else 0.0
    # A warning can only come true H days before the history ends; the ones judged later
    # are the users who came back, so a short history makes precision read low.
    if span_days <= horizon:
        text += (
            f" The judged period covers {span_days:.1f} days, no more than the {horizon:g}-day"
            " horizon: no warning can be seen to come true, so precision is 0 by"
            " construction. Choose a shorter --horizon-days, an earlier --judge-from, or"
            " replay a longer history."
        )
    elif c["warnings_censored"] > judged:
        text += (
            " Most warnings could not be judged, and the judged ones lean towards users who"
            " came back: precision is biased low. Choose a shorter --horizon-days or replay"
            " a longer history."
        )
    return f"<p>{_e(text)}</p>"


def _row(cells: Sequence[str], text_cells: int = 1) -> str:
    """A table row: the first `text_cells` as text, the rest as numbers (already escaped)."""
    return (
        "<tr>"
        + "".join(f"<td>{c}</td>" for c in cells[:text_cells])
        + "".join(f'<td class="num">{c}</td>' for c in cells[text_cells:])
        + "</tr>"
    )


def _headline_table(evaluation: Evaluation) -> str:
    horizon = f"{evaluation['horizon_days']:g}"
    head = (
        "<tr><th>Rule</th><th>Warnings judged</th><th>Precision</th><th>Churns judged</th>"
        "<th>Caught</th><th>Recall</th><th>Lead median (days before the horizon closes)</th>"
        "<th>Delay median (days since the last activity)</th>"
        f"<th>Came back within {horizon} days</th><th>Active again before the end</th></tr>"
    )
    rows = []
    for name, scores, _ in _rules(evaluation):
        o = scores["overall"]
        rows.append(
            _row(
                [
                    _e(name),
                    _n(o["warned"]),
                    _fmt(o["precision"]),
                    _n(o["churned"]),
                    _n(o["caught"]),
                    _fmt(o["recall"]),
                    _fmt(o["lead_days"]["median"]),
                    _fmt(o["delay_days"]["median"]),
                    _pct(o["came_back_within_horizon"]),
                    _pct(o["returned_later"]),
                ]
            )
        )
    return f'<table class="headline">{head}{"".join(rows)}</table>'


def _evaluation_table(evaluation: Evaluation, tiers: Sequence[str]) -> str:
    head = (
        "<tr><th>Tier</th><th>Rule</th><th>Warnings judged</th><th>Came true</th>"
        "<th>Precision</th><th>Churns</th><th>Caught</th><th>Recall</th>"
        "<th>Lead median (days)</th><th>p25</th><th>p75</th>"
        "<th>Delay median (days)</th><th>p25</th><th>p75</th></tr>"
    )
    rows = []
    for group in ["overall", *tiers]:
        for name, scores, _ in _rules(evaluation):
            score = _score(scores, group)
            cells = [_e(group), _e(name)]
            if score is None:
                cells += ["0", "0", "n/a", "0", "0", "n/a"] + ["n/a"] * 6
            else:
                lead, delay = score["lead_days"], score["delay_days"]
                cells += [
                    _n(score["warned"]),
                    _n(score["true_positives"]),
                    _fmt(score["precision"]),
                    _n(score["churned"]),
                    _n(score["caught"]),
                    _fmt(score["recall"]),
                    _fmt(lead["median"]),
                    _fmt(lead["p25"]),
                    _fmt(lead["p75"]),
                    _fmt(delay["median"]),
                    _fmt(delay["p25"]),
                    _fmt(delay["p75"]),
                ]
            rows.append(_row(cells, 2))
    return f'<table class="evaluation">{head}{"".join(rows)}</table>'


def _auc_html(evaluation: Evaluation) -> str:
    auc = evaluation["auc"]
    snapshot = evaluation["snapshot"]
    rows: list[tuple[str, Auc | None, str]] = [
        ("at Pulse's judged warnings, by the warning's risk_score", auc["at_warnings"], ""),
        (
            f'at the "{auc["silence_rule"] or "silent N days"}" moments, by the model\'s '
            "P0 (moments no policy chose)",
            auc["at_silence"],
            evaluation["missing"].get("calibration", ""),
        ),
        (
            "at the snapshot "
            + (f"{snapshot['at']}, every user active by then" if snapshot else "date")
            + ", by the model's P0",
            auc["at_snapshot"],
            evaluation["missing"].get("snapshot", ""),
        ),
    ]
    head = (
        "<tr><th>Where the score is ranked</th><th>ROC AUC</th>"
        "<th>No activity within the horizon (n)</th><th>Active again (n)</th></tr>"
    )
    body = []
    for label, figure, why in rows:
        if figure is None:
            body.append(_row([_e(label), "n/a", "", _e(why)], 1))
            continue
        body.append(
            _row(
                [
                    _e(label),
                    _fmt(figure["auc"]),
                    _n(figure["positives"]),
                    _n(figure["negatives"]),
                ]
            )
        )
    return (
        '<table class="auc">' + head + "".join(body) + "</table>"
        "<p>At the warnings the ranking is among users the rule had already picked out, so it"
        " is usually lower than over everyone at the snapshot.</p>"
    )


def _calibration_table(label: str, table: Calibration) -> str:
    head = (
        f"<tr><th>{_e(label)}: group</th><th>Users or warnings (n)</th>"
        "<th>Mean predicted</th><th>Observed</th><th>Gap (observed - predicted)</th></tr>"
    )
    body = "".join(
        _row(
            [
                _n(g["group"]),
                _n(g["n"]),
                _fmt(g["predicted"]),
                _fmt(g["observed"]),
                f"{g['gap']:+.4f}",
            ]
        )
        for g in table["groups"]
    )
    return (
        f'<table class="calibration">{head}{body}</table>'
        f"<p>Largest gap: {_fmt(table['max_abs_gap'])} over {_n(table['n'])}.</p>"
    )


def _calibration_html(evaluation: Evaluation, out_dir: Path) -> str:
    snapshot = evaluation["snapshot"]
    at_warnings = evaluation["calibration_at_warnings"]
    series: list[tuple[str, Calibration, str, str]] = []
    if snapshot is not None and snapshot["calibration"]["n"]:
        series.append(
            (f"snapshot {snapshot['at'][:10]}", snapshot["calibration"], _SNAPSHOT_COLOUR, "o")
        )
    if at_warnings is not None and at_warnings["n"]:
        series.append(("Pulse's judged warnings", at_warnings, _PULSE_COLOUR, "s"))
    notes = "".join(_empty(f"No {k}: {v}.") for k, v in evaluation["missing"].items())
    if not series:
        return notes or _empty("Nothing to calibrate: no user or warning was judged.")
    _calibration_chart(series, evaluation["horizon_days"], out_dir / CALIBRATION_PNG)
    tables = "".join(_calibration_table(label, table) for label, table, _, _ in series)
    return (
        _img(CALIBRATION_PNG, "Calibration chart: predicted against observed", _CALIBRATION)
        + notes
        + tables
    )


def _pr_html(evaluation: Evaluation, out_dir: Path) -> str:
    curve = evaluation["pr_curve"]
    if curve is None:
        why = evaluation["missing"].get("pr_curve", "no churn model")
        return _empty(f"No precision-recall curve: {why}.")
    _pr_chart(curve, evaluation, out_dir / PR_PNG)
    head = (
        "<tr><th>Threshold</th><th>Warnings judged</th><th>Precision</th><th>Recall</th>"
        "<th>Lead median (days)</th><th>Delay median (days)</th></tr>"
    )
    body = "".join(
        _row(
            [
                _e(f"{p['threshold']:g}") + (" (operating)" if p["operating"] else ""),
                _n(p["warnings"]),
                _fmt(p["precision"]),
                _fmt(p["recall"]),
                _fmt(p["lead_median_days"]),
                _fmt(p["delay_median_days"]),
            ]
        )
        for p in curve["points"]
    )
    return (
        _img(PR_PNG, "Precision against recall by threshold, with the silence rules", _PR)
        + "<p>Each point warns once per silence, at the first moment the model's probability"
        " of no activity within the horizon reaches the threshold (simulated from the"
        " activity, so it can differ from Pulse's warnings in the replay, which are marked"
        f" apart). Recall is over the same {_n(curve['churns'])} judged churns everywhere.</p>"
        f'<table class="pr">{head}{body}</table>'
    )


def _stages_html(quality: StageQuality) -> str:
    head = (
        "<tr><th>Moved into</th><th>Transitions (judged period)</th>"
        "<th>Active again later</th><th>Share</th></tr>"
    )
    body = "".join(
        _row([_e(stage), _n(q["transitions"]), _n(q["returned"]), _pct(q["share"])])
        for stage, q in (("churned", quality["churned"]), ("dormant", quality["dormant"]))
    )
    return (
        f'<table class="stages">{head}{body}</table>'
        "<p>Returns are seen only until the history ends, so these shares are lower bounds:"
        " a user marked churned who came back later than that is not counted.</p>"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


def _recall_html(recall: RecallReport) -> str:
    """The recall section of a replay: the split's counts, and why they measure no uplift."""
    window = recall["attribution_window_days"]
    contacted = recall.get("contacted", False)
    caveat = (
        "The history comes from a system whose senders contacted the treated group "
        "(--contacted): the uplift below is what the contact added over the holdout group."
        if contacted
        else "A replay contacts nobody, so the treated-against-holdout uplift cannot be measured "
        "on this history: nobody was contacted. The counts below only show how the split fell "
        "(the holdout group's share of warnings, and returns that happened by themselves); "
        "the two groups' rates differ here by chance alone. Measure the uplift on the live "
        "pipeline, where senders contact the treated group (or replay such a history with "
        "--contacted)."
    )
    intro = (
        f"The holdout group is {recall['holdout_fraction'] * 100:g}% of users, fixed per user. "
        f"A warning is judged once its {window:g}-day attribution window has ended: "
        "reactivated if the user came back (left at_risk, dormant or churned for active or "
        "reactivated) within it. Open warnings are still in their window and are not in the "
        "rates."
    )
    rows = recall["rows"]
    text = f"<p><strong>{_e(caveat)}</strong></p><p>{_e(intro)}</p>"
    if not rows:
        return text + _empty("No churn warnings: nothing to count.")
    head = (
        "<tr><th>Tier</th><th>Reason</th>"
        "<th>Treated warned</th><th>open</th><th>judged (n)</th><th>reactivated</th>"
        "<th>rate</th>"
        "<th>Holdout warned</th><th>open</th><th>judged (n)</th><th>reactivated</th>"
        "<th>rate</th>"
        + ("<th>uplift (pp)</th><th>95% interval</th>" if contacted else "")
        + "</tr>"
    )
    body = []
    for r in rows:
        cells = [_e(r["tier"] or "all"), _e(r["reason"] or "all")]
        for g in (r["treated"], r["holdout"]):
            cells += [
                _n(g["warned"]),
                _n(g["open"]),
                _n(g["judged"]),
                _n(g["reactivated"]),
                _pct(g["rate"]),
            ]
        if contacted:
            interval = (
                "n/a"
                if r["ci_low"] is None or r["ci_high"] is None
                else f"{_pp(r['ci_low'])} to {_pp(r['ci_high'])}"
            )
            cells += [_pp(r["uplift"]), interval]
        body.append(_row(cells, 2))
    days = recall["days_to_return"]
    returns = "; ".join(
        f"{_e(g)}: {_n(d['returns'])} returns, median "
        + ("n/a" if d["median"] is None else f"{d['median']:g} days")
        for g, d in days.items()
    )
    return (
        text
        + f'<table class="recall">{head}{"".join(body)}</table>'
        + f"<p>Days from warning to return: {returns}.</p>"
    )


def _retention_table(rows: Sequence[RetentionCohort]) -> str:
    n = max(len(r["active"]) for r in rows)
    head = (
        "<tr><th>Cohort</th><th>Users</th>" + "".join(f"<th>{k}</th>" for k in range(n)) + "</tr>"
    )
    body = "".join(
        f'<tr><td>{_e(r["cohort"])}</td><td class="num">{_n(r["size"])}</td>'
        + "".join(f'<td class="num">{"" if v is None else _n(v)}</td>' for v in r["active"])
        + "</tr>"
        for r in rows
    )
    return f'<table class="retention">{head}{body}</table>'


def _retention_html(retention: RetentionReport, out_dir: Path) -> str:
    weeks = retention["week"]
    if not weeks:
        return _empty("No activity: no cohorts.")
    _retention_chart(retention, out_dir / RETENTION_PNG)
    _retention_curves(retention, out_dir / RETENTION_CURVES_PNG)
    intro = (
        "A cohort is the users whose first activity (any event but a passive one) fell in one "
        "UTC day or ISO week. Cell k: the share of the cohort active in the k-th day or week "
        "after it (each user counted once per period); blank: not reached by the end of the "
        "history. The curves also show unbounded retention: active in week k or any later "
        f"one. Days 0 to {retention['days']} and weeks 0 to {retention['weeks']} "
        "(the policy's retention_days and retention_weeks)."
    )
    return (
        f"<p>{_e(intro)}</p>"
        + _img(RETENTION_PNG, "Heat maps of the week and day retention triangles", _RETENTION)
        + _img(RETENTION_CURVES_PNG, "Retention curves of the latest week cohorts", _CURVES)
        + "<details><summary>Users active per week after the cohort's week (the latest "
        f"{min(len(weeks), _HEAT_WEEKS)} cohorts)</summary>"
        + _retention_table(weeks[-_HEAT_WEEKS:])
        + "</details>"
    )


def _rfm_html(rfm: RfmReport, out_dir: Path) -> str:
    if not any(rfm["final"].values()) and not rfm["daily"]:
        return _empty("No purchases: no RFM segments.")
    intro = (
        "Recency (days since the last purchase), frequency (purchases) and monetary value "
        f"(spend) within the last {rfm['window_days']} days, each scored 1 to 5; a score of "
        "3 or more is high (the policy's rfm.high_score), and high or low on each names the "
        "segment. Users without a purchase in the window are in none."
    )
    body = f"<p>{_e(intro)}</p>"
    if rfm["daily"]:
        _rfm_chart(rfm, out_dir / RFM_PNG)
        body += _img(RFM_PNG, "Stacked area chart of users per RFM segment", _WIDE)
    rows = "".join(
        f'<tr><td>{_e(n)}</td><td class="num">{_n(rfm["final"].get(n, 0))}</td>'
        f'<td class="num">{_n(rfm["changes_to"].get(n, 0))}</td></tr>'
        for n in rfm["segments"]
    )
    left = rfm["changes_to"].get("none", 0)
    return (
        body
        + '<table class="rfm"><tr><th>Segment</th><th>Users at the end</th>'
        + f"<th>Moves into it</th></tr>{rows}</table>"
        + f"<p>Users whose last purchase left the window: {_n(left)} moves.</p>"
    )


def _weekly_table(weekly: Iterable[Week]) -> str:
    rows = "".join(
        f'<tr><td>{_e(w["week"])}</td><td class="num">{_n(w["warnings"])}</td>'
        f'<td class="num">{_n(w["tier_changes"])}</td>'
        f'<td class="num">{_n(w["reactivations"])}</td></tr>'
        for w in weekly
    )
    return (
        "<details><summary>The figures per week</summary><table>"
        "<tr><th>Week of</th><th>Churn warnings</th><th>Tier changes</th>"
        f"<th>Reactivations</th></tr>{rows}</table></details>"
    )


def _period(s: Summary) -> str:
    if s["first_event"] is None:
        return "no events (empty history)"
    return f"{s['first_event']} to {s['last_event']}"


def render_report(data: ReportData, out_dir: Path) -> Path:
    """Write report.html and its PNG charts into `out_dir` (created if missing).

    Returns the path of report.html. A chart without data (an empty history, no warnings) is
    not drawn: the page says so instead, and a stale PNG of an earlier run is removed so the
    directory never holds a chart that disagrees with the page. Raises OSError when the
    directory cannot be written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in CHARTS:
        (out_dir / name).unlink(missing_ok=True)
    evaluation = data["evaluation"]
    sections = []

    populations = data["populations"]
    if populations:
        _populations_chart(populations, out_dir / POPULATIONS_PNG)
        last = populations[-1]
        stages = ", ".join(
            f"{_e(s)} {_n(last['stages'].get(s, 0))}" for s in _stage_order(populations)
        )
        body = (
            _img(POPULATIONS_PNG, "Stacked area chart of users per lifecycle stage", _WIDE)
            + f"<p>At the end of {_e(last['day'])}: {stages}.</p>"
        )
    else:
        body = _empty("No full day of history: no populations to show.")
    sections.append(("Users per lifecycle stage over time", body))

    weekly = data["weekly"]
    if weekly:
        _weekly_chart(weekly, out_dir / WEEKLY_PNG)
        body = _img(
            WEEKLY_PNG, "Bar chart of warnings, tier changes, reactivations", _WIDE
        ) + _weekly_table(weekly)
    else:
        body = _empty("No warnings, tier changes or reactivations.")
    sections.append(("Warnings, tier changes and reactivations per week", body))

    if evaluation is not None:
        tiers = _tier_order(data, evaluation)
        _evaluation_chart(evaluation, out_dir / EVALUATION_PNG)
        body = (
            _headline_table(evaluation)
            + _img(
                EVALUATION_PNG,
                "Precision, recall, lead and delay of Pulse and each silence rule",
                _EVAL,
            )
            + _censored_note(data["summary"], evaluation)
            + "<p>Per tier (precision over the warnings judged, recall over the churns judged,"
            " lead and delay over the churns caught):</p>" + _evaluation_table(evaluation, tiers)
        )
        sections.append(("Warnings against the silence rules", body))
        sections.append(("Does the risk score rank users? (ROC AUC)", _auc_html(evaluation)))
        sections.append(
            (
                "Is the risk score a probability? (calibration)",
                _calibration_html(evaluation, out_dir),
            )
        )
        sections.append(("Precision and recall by threshold", _pr_html(evaluation, out_dir)))
        sections.append(
            ("Do the stages mean what they say?", _stages_html(evaluation["stage_quality"]))
        )
    else:
        sections.append(
            ("Warnings against the silence rules", _empty("No evaluation: the history is empty."))
        )

    scores = data["risk_scores"]
    if scores:
        _risk_chart(scores, out_dir / RISK_PNG)
        body = _img(RISK_PNG, "Histogram of the warnings' risk scores", _RISK) + (
            f"<p>{_n(len(scores))} warnings; risk score min {_e(min(scores))}, "
            f"median {_e(median(scores))}, max {_e(max(scores))}.</p>"
        )
    else:
        body = _empty("No warnings: no risk scores to show.")
    sections.append(("Risk scores of the warnings", body))

    recall = data.get("recall")
    if recall is not None:
        sections.append(("Did the recall work?", _recall_html(recall)))

    rfm = data.get("rfm")
    if rfm is not None:
        sections.append(("RFM value segments", _rfm_html(rfm, out_dir)))

    retention = data.get("retention")
    if retention is not None:
        sections.append(("Retention cohorts", _retention_html(retention, out_dir)))

    s = data["summary"]
    page = _PAGE.substitute(
        title=_e(data["title"]),
        css=_CSS,
        source=_e(data["source"]),
        period=_e(_period(s)),
        generated_at=_e(data["generated_at"]),
        summary=_summary_html(data),
        how_to_read=_how_to_read(evaluation),
        sections="".join(f"<h2>{_e(title)}</h2>{body}" for title, body in sections),
    )
    path = out_dir / REPORT
    path.write_text(page, encoding="utf-8")
    return path
