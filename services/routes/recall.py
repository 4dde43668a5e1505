"""GET /v1/stats/recall: did the recall work? Treated against holdout, from the view's totals."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from services.auth import require
from services.clock import now_ms
from services.deps import SettingsDep, ViewDep, get_policy
from services.errors import error_responses
from services.models import RecallComparison, RecallStats
from streams.core.eventtime import format_ts
from streams.core.recall import Comparison, compare, comparison_doc, totals, wilson
from streams.view.keys import parse_recall_field

router = APIRouter(prefix="/v1/stats", tags=["segments"])


def _model(c: Comparison) -> RecallComparison:
    doc = comparison_doc(c)
    for group, counts in (("treated", c.treated), ("holdout", c.holdout)):
        low, high = wilson(counts.reactivated, counts.judged) if counts.judged else (None, None)
        doc[group].update(rate_ci_low=low, rate_ci_high=high)  # type: ignore[attr-defined]
    return RecallComparison.model_validate(doc)


@router.get(
    "/recall",
    response_model=RecallStats,
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403),
    summary="Reactivation of warned users, treated against holdout",
)
async def recall_stats(request: Request, view: ViewDep, settings: SettingsDep) -> RecallStats:
    """Per holdout group, and overall, per tier, per warning reason and per tier and reason:
    churn warnings issued, still open (attribution window running), judged, reactivated
    within the window, the reactivation rate (reactivated / judged), and the uplift
    (treated rate - holdout rate) with its 95% confidence interval (Newcombe's hybrid score
    interval), each group's rate with its own 95% interval (Wilson score). Rates and uplifts
    are null until the groups have judged warnings.

    The figures are the sum of every user's tally in the view, kept by the worker as states
    change: no history is scanned. Tiers are listed in the policy's rank order (lowest
    first; tiers it does not know last, by name), reasons by name.
    """
    raw = await view.recall_counts()
    rows = []
    for field, n in raw.items():
        try:
            rows.append((*parse_recall_field(field), int(n)))
        except ValueError:
            continue  # not a field the worker writes
    by_cell = totals(rows)
    ranks = {name: i for i, name in enumerate(get_policy(request).tier_names)}
    tiers = sorted({t for _, t, _ in by_cell}, key=lambda t: (ranks.get(t, len(ranks)), t))
    reasons = sorted({r for _, _, r in by_cell})
    return RecallStats(
        overall=_model(compare(by_cell)),
        by_tier=[_model(compare(by_cell, tier=t)) for t in tiers],
        by_reason=[_model(compare(by_cell, reason=r)) for r in reasons],
        by_tier_and_reason=[
            _model(c)
            for t in tiers
            for r in reasons
            if (c := compare(by_cell, tier=t, reason=r)).treated.warned or c.holdout.warned
        ],
        as_of=format_ts(now_ms(settings)),  # the event-time clock, as /v1/stats
    )
