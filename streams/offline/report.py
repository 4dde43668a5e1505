"""The backtest report: `report.html` and its PNG charts, rendered from a replay's report data.

The page is static (no script, no network): the charts are PNG files next to it, drawn with
matplotlib's Agg renderer, and every figure is also written out as text for exact reading.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from statistics import median
from typing import NotRequired, TypedDict

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streams.core.eventtime import DAY_MS, parse_ts
from streams.core.lifecycle import Stage
from streams.core.outputs import Kind

REPORT = "report.html"
POPULATIONS_PNG = "populations.png"
WEEKLY_PNG = "weekly.png"
EVALUATION_PNG = "evaluation.png"
RISK_PNG = "risk-scores.png"
CHARTS = (POPULATIONS_PNG, WEEKLY_PNG, EVALUATION_PNG, RISK_PNG)


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


class LeadTime(TypedDict):
    median: float | None
    p25: float | None
    p75: float | None


class Score(TypedDict):
    """One rule's tally (see streams.offline.evaluation)."""

    warned: int  # warnings judged (censored ones left out)
    churned: int
    true_positives: int
    caught: int
    precision: float | None  # None when nothing was judged
    recall: float | None
    lead_time_days: LeadTime


class Scores(TypedDict):
    overall: Score
    per_tier: dict[str, Score]


class BaselineScores(Scores):
    rule: str  # e.g. "silent 14 days"


class Evaluation(TypedDict):
    horizon_days: float
    pulse: Scores
    baseline: BaselineScores


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


_STAGE_COLOURS = {
    Stage.NEW: "#9ecae1",
    Stage.ACTIVE: "#31a354",
    Stage.AT_RISK: "#fd8d3c",
    Stage.DORMANT: "#969696",
    Stage.CHURNED: "#de2d26",
    Stage.REACTIVATED: "#756bb1",
}
_PULSE_COLOUR = "#3182bd"
_BASELINE_COLOUR = "#bdbdbd"
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
_EVAL_ROW = (12.0, 4.4)  # the three evaluation panels side by side
_EVAL_COLUMN = (10.0, 10.5)  # stacked, when there are too many tiers for a row
_RISK = (8.0, 4.0)


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


def _stage_order(populations: Sequence[Population]) -> list[str]:
    """Lifecycle order, then any stage the data has that this version does not know."""
    seen = {s for p in populations for s in p["stages"]}
    return [s for s in Stage.ALL if s in seen] + sorted(seen - set(Stage.ALL))


def _tier_order(data: ReportData, evaluation: Evaluation) -> list[str]:
    seen = set(evaluation["pulse"]["per_tier"]) | set(evaluation["baseline"]["per_tier"])
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
    ax.set_title("Users per stage at the end of each day")
    ax.set_ylabel("users")
    ax.margins(x=0)
    ax.grid(axis="y", alpha=0.3)
    # Reversed, so the legend reads top-down like the stack.
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.autofmt_xdate()
    _save(fig, path)


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


def _evaluation_size(tiers: Sequence[str]) -> tuple[float, float]:
    # Beyond two tiers the bar labels (value and sample size) collide in a 4-inch panel.
    return _EVAL_ROW if len(tiers) <= 2 else _EVAL_COLUMN


def _evaluation_chart(evaluation: Evaluation, tiers: Sequence[str], path: Path) -> None:
    groups = ["overall", *tiers]
    rules = (
        ("Pulse", evaluation["pulse"], _PULSE_COLOUR),
        (f"baseline: {evaluation['baseline']['rule']}", evaluation["baseline"], _BASELINE_COLOUR),
    )
    size = _evaluation_size(tiers)
    fig = _fig(size)
    panels = fig.subplots(1, 3) if size == _EVAL_ROW else fig.subplots(3, 1)
    metrics = (
        ("precision", "Precision", "share of warnings that came true"),
        ("recall", "Recall", "share of churns caught"),
        ("lead", "Lead time", "days from last activity to warning"),
    )
    for ax, (metric, title, ylabel) in zip(panels, metrics, strict=True):
        width = 0.38
        top = 0.0
        for j, (name, scores, colour) in enumerate(rules):
            for g, group in enumerate(groups):
                score = _score(scores, group)
                x = g + (j - 0.5) * width
                value, label, spread = _metric(score, metric)
                if value is None:
                    ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, color="#636363")
                    continue
                yerr = None
                label_at = value
                if spread is not None:
                    yerr = [[value - spread[0]], [spread[1] - value]]
                    label_at = max(value, spread[1])  # above the whisker, not behind it
                ax.bar(
                    x,
                    value,
                    width,
                    color=colour,
                    label=name if g == 0 else None,
                    yerr=yerr,
                    error_kw={"ecolor": "#525252", "capsize": 3, "linewidth": 1},
                )
                top = max(top, label_at)
                ax.text(x, label_at, label, ha="center", va="bottom", fontsize=7)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_xlim(-0.6, len(groups) - 0.4)  # room for an "n/a" in the last group
        ax.set_ylim(0, 1.15 if metric != "lead" else max(top, 1.0) * 1.2)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(
        *panels[0].get_legend_handles_labels(),
        loc="outside lower center",
        ncols=2,
    )
    fig.suptitle(f"Warnings against the baseline (horizon {evaluation['horizon_days']:g} days)")
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
    lead = score["lead_time_days"]
    m, lo, hi = lead["median"], lead["p25"], lead["p75"]
    if m is None:
        return None, "", None
    spread = (lo, hi) if lo is not None and hi is not None else None
    return m, f"{m:.1f}\nn={score['caught']}", spread


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


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1240px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img { max-width: 100%; height: auto; }
.empty { color: #777; font-style: italic; }
dt { font-weight: 600; }
"""


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
    rule = evaluation["baseline"]["rule"] if evaluation else "silent N days"
    items = (
        (
            "Churn",
            f"a user's last activity followed by {horizon} of silence (before their next "
            "activity, or before the history ends). Passive events such as points earned "
            "are not activity.",
        ),
        (
            "Precision",
            f"of the warnings that can be judged, the share that came true: the user had no "
            f"activity within {horizon} after the warning. A warning is left out (censored) "
            f"when the history ends less than {horizon} after it and the user was not back.",
        ),
        (
            "Recall",
            f"of the churns, the share that were caught: a warning fell within the {horizon} "
            "of silence after the last activity.",
        ),
        (
            "Lead time",
            "days from the churned user's last activity to the first warning that caught the "
            "churn: the median, and the middle half (25th to 75th percentile). Earlier is "
            "better: more time to win the user back.",
        ),
        (
            "Baseline",
            f'the fixed rule "{rule}": a warning to every user that many days into any '
            "silence, judged in the same way.",
        ),
        (
            "Per tier",
            "a warning counts under the tier the user had when warned; a churn under the "
            "tier at the user's last activity.",
        ),
    )
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else _e(value)


def _censored_note(summary: Summary, evaluation: Evaluation) -> str:
    """How many of Pulse's warnings the history was too short to judge, and why it matters."""
    horizon = evaluation["horizon_days"]
    warnings = summary["outputs"].get(Kind.WARNING, 0)
    judged = evaluation["pulse"]["overall"]["warned"]
    censored = max(0, warnings - judged)
    text = (
        f"Pulse's warnings judged: {_n(judged)} of {_n(warnings)} ({_n(censored)} left out "
        f"because the history ends less than {horizon:g} days after them)."
    )
    first, last = summary["first_event"], summary["last_event"]
    span_days = (parse_ts(last) - parse_ts(first)) / DAY_MS if first and last else 0.0
    # A warning can only come true H days before the history ends; the ones judged later
    # are the users who came back, so a short history makes precision read low.
    if span_days <= horizon:
        text += (
            f" The history covers {span_days:.1f} days, no more than the {horizon:g}-day"
            " horizon: no warning can be seen to come true, so precision is 0 by"
            " construction. Choose a shorter --horizon-days or replay a longer history."
        )
    elif censored > judged:
        text += (
            " Most warnings could not be judged, and the judged ones lean towards users who"
            " came back: precision is biased low. Choose a shorter --horizon-days or replay"
            " a longer history."
        )
    return f"<p>{_e(text)}</p>"


def _evaluation_table(evaluation: Evaluation, tiers: Sequence[str]) -> str:
    head = (
        "<tr><th>Tier</th><th>Rule</th><th>Warnings judged</th><th>Came true</th>"
        "<th>Precision</th><th>Churns</th><th>Caught</th><th>Recall</th>"
        "<th>Lead time median (days)</th><th>p25</th><th>p75</th></tr>"
    )
    rules = (
        ("Pulse", evaluation["pulse"]),
        (evaluation["baseline"]["rule"], evaluation["baseline"]),
    )
    rows = []
    for group in ["overall", *tiers]:
        for name, scores in rules:
            score = _score(scores, group)
            cells = [_e(group), _e(name)]
            if score is None:
                cells += ["0", "0", "n/a", "0", "0", "n/a", "n/a", "n/a", "n/a"]
            else:
                lead = score["lead_time_days"]
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
                ]
            rows.append(
                "<tr>"
                + "".join(f"<td>{c}</td>" for c in cells[:2])
                + "".join(f'<td class="num">{c}</td>' for c in cells[2:])
                + "</tr>"
            )
    return f'<table class="evaluation">{head}{"".join(rows)}</table>'


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pp(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}"


def _recall_html(recall: RecallReport) -> str:
    """The recall section: how to read it, then treated against holdout per slice."""
    window = recall["attribution_window_days"]
    intro = (
        f"Senders contact the treated group and skip the holdout group "
        f"({recall['holdout_fraction'] * 100:g}% of users, fixed per user). A warning is "
        f"judged once its {window:g}-day attribution window has ended: reactivated if the "
        "user came back (left at_risk, dormant or churned for active or reactivated) within "
        "it. Open warnings are still in their window and are not in the rates. Uplift = "
        "treated rate - holdout rate, in percentage points, with its 95% confidence "
        "interval (Newcombe's hybrid score interval for two proportions); an interval that "
        "excludes 0 means the contact made a difference at that level."
    )
    rows = recall["rows"]
    if not rows:
        return f"<p>{_e(intro)}</p>" + _empty("No churn warnings: nothing to measure.")
    head = (
        "<tr><th>Tier</th><th>Reason</th>"
        "<th>Treated warned</th><th>open</th><th>judged (n)</th><th>reactivated</th>"
        "<th>rate</th>"
        "<th>Holdout warned</th><th>open</th><th>judged (n)</th><th>reactivated</th>"
        "<th>rate</th>"
        "<th>Uplift (pp)</th><th>95% CI (pp)</th></tr>"
    )
    body = []
    for r in rows:
        cells = [_e(r["tier"] or "all"), _e(r["reason"] or "all")]
        nums: list[str] = []
        for g in (r["treated"], r["holdout"]):
            nums += [
                _n(g["warned"]),
                _n(g["open"]),
                _n(g["judged"]),
                _n(g["reactivated"]),
                _pct(g["rate"]),
            ]
        ci = "n/a" if r["ci_low"] is None else f"{_pp(r['ci_low'])} to {_pp(r['ci_high'])}"
        nums += [_pp(r["uplift"]), ci]
        body.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "".join(f'<td class="num">{_e(c)}</td>' for c in nums)
            + "</tr>"
        )
    days = recall["days_to_return"]
    returns = "; ".join(
        f"{_e(g)}: {_n(d['returns'])} returns, median "
        + ("n/a" if d["median"] is None else f"{d['median']:g} days")
        for g, d in days.items()
    )
    return (
        f"<p>{_e(intro)}</p>"
        f'<table class="recall">{head}{"".join(body)}</table>'
        f"<p>Days from warning to return: {returns}.</p>"
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
        _evaluation_chart(evaluation, tiers, out_dir / EVALUATION_PNG)
        body = (
            _img(
                EVALUATION_PNG,
                "Precision, recall and lead time, Pulse vs baseline",
                _evaluation_size(tiers),
            )
            + "<p>Sample sizes are in the table: precision is judged over the warnings judged,"
            " recall over the churns, lead time over the churns caught.</p>"
            + _censored_note(data["summary"], evaluation)
            + _evaluation_table(evaluation, tiers)
        )
    else:
        body = _empty("No evaluation: the history is empty.")
    sections.append(("Warnings against the baseline", body))

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

    s = data["summary"]
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data["title"])}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(data["title"])}</h1>
<p class="meta">Source: <code>{_e(data["source"])}</code><br>
Period (event time, UTC): {_e(_period(s))}<br>
Generated: {_e(data["generated_at"])}</p>
<h2>Summary</h2>
{_summary_html(data)}
<h2>How to read this</h2>
{_how_to_read(evaluation)}
{"".join(f"<h2>{_e(title)}</h2>{body}" for title, body in sections)}
</body>
</html>
"""
    path = out_dir / REPORT
    path.write_text(page, encoding="utf-8")
    return path
