"""GET /v1/stats/retention: the retention triangle of the last cohorts, from the view's counts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from services.auth import require
from services.clock import now_ms
from services.deps import PolicyDep, SettingsDep, ViewDep
from services.errors import error_responses
from services.models import RetentionCohort, RetentionStats
from streams.core.eventtime import DAY_MS, format_ts
from streams.core.retention import DAY, cohort_doc, triangle

router = APIRouter(prefix="/v1/stats", tags=["segments"])

MAX_COHORTS = 366

Period = Annotated[
    Literal["day", "week"],
    Query(description="Cohorts by the UTC day or the ISO week of the users' first activity."),
]
Cohorts = Annotated[
    int,
    Query(ge=1, le=MAX_COHORTS, description="How many of the latest cohorts with users."),
]


@router.get(
    "/retention",
    response_model=RetentionStats,
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403, 422),
    summary="Retention cohorts: sizes, N-day/N-week and unbounded retention",
)
async def retention_stats(
    view: ViewDep,
    settings: SettingsDep,
    policy: PolicyDep,
    period: Period = "week",
    cohorts: Cohorts = 8,
) -> RetentionStats:
    """The last `cohorts` cohorts (oldest first) of users grouped by the UTC day or ISO week
    of their first activity (any event of a non-passive type), each with its size and, for
    k = 0..N (the policy's `retention_days`, 30, or `retention_weeks`, 26), the users active
    in period k after it and those active in period k or later. A user counts at most once
    per period; late events within the allowed lateness count, duplicates never, and an
    erased user leaves the counts. The counts are kept by the worker as states change: no
    history is scanned. Periods that have not begun on the event-time clock (`as_of`) are
    null.
    """
    now = now_ms(settings)
    n = policy.retention_days if period == DAY else policy.retention_weeks
    counts = await view.retention_counts(period, cohorts)
    rows = triangle(counts, period, n, cohorts, today=now // DAY_MS)
    return RetentionStats(
        period=period,
        periods=n,
        cohorts=[RetentionCohort.model_validate(cohort_doc(r)) for r in rows],
        as_of=format_ts(now),
    )
