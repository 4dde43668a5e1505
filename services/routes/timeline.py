"""GET /v1/stats/timeline: users entering and leaving each lifecycle stage per event-time
bucket, and the stage populations, from the series the worker keeps in the view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from services.auth import require
from services.clock import now_ms
from services.deps import SettingsDep, ViewDep
from services.errors import error_responses
from services.models import Stage, Timeline, TimelineBucket
from streams.core.eventtime import format_ts
from streams.view.keys import parse_timeline_field

router = APIRouter(prefix="/v1/stats", tags=["segments"])

STAGES = [s.value for s in Stage]
# Listing every bucket between the oldest and the newest kept is bounded by what the worker
# keeps (PULSE_TIMELINE_BUCKETS); this guards against a view written with another width.
_MAX_BUCKETS = 10_000


@router.get(
    "/timeline",
    response_model=Timeline,
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403, 422),
    summary="Lifecycle changes and stage populations over time",
)
async def timeline(
    view: ViewDep,
    settings: SettingsDep,
    buckets: Annotated[
        int | None, Query(ge=1, le=_MAX_BUCKETS, description="Only the newest `buckets`.")
    ] = None,
) -> Timeline:
    """Per event-time bucket (a day unless PULSE_TIMELINE_BUCKET_HOURS says otherwise; the
    worker keeps the last PULSE_TIMELINE_BUCKETS), the users who entered and left each stage
    and how many were in each stage at its end.

    The worker counts a lifecycle change in the bucket of its event time, in the same atomic
    write that stores the user's new state and only when that write is applied, so a
    redelivered or stale write counts nothing. The populations are exact: the current users
    per stage (the view's counts, read in the same instant as the series) minus the net
    changes of every later bucket, which needs no snapshot of the counts and stays right
    however late a user's changes reach the view.
    """
    width, counts, stored = await view.timeline()
    current = {s: 0 for s in STAGES}
    for stage, n in counts.items():
        current[stage] = int(n)
    items: list[TimelineBucket] = []
    if width and stored:
        by_start = dict(stored)
        first, last = stored[0][0], stored[-1][0]
        first = max(first, last - (_MAX_BUCKETS - 1) * width)
        starts = list(range(first, last + 1, width))
        population = dict(current)
        for start in reversed(starts):
            entered = {s: 0 for s in current}
            left = {s: 0 for s in current}
            for field, n in by_start.get(start, {}).items():
                try:
                    from_stage, to_stage = parse_timeline_field(field)
                except ValueError:
                    continue  # not a field the worker writes
                if from_stage:
                    left[from_stage] = left.get(from_stage, 0) + int(n)
                if to_stage:
                    entered[to_stage] = entered.get(to_stage, 0) + int(n)
            for d in (population, entered, left):
                for s in (*entered, *left):
                    d.setdefault(s, 0)
            items.append(
                TimelineBucket(
                    start=format_ts(start),
                    start_ms=start,
                    entered=entered,
                    left=left,
                    population=dict(population),
                )
            )
            # The population at the end of the bucket before: undo this bucket's changes.
            for s in population:
                population[s] -= entered.get(s, 0) - left.get(s, 0)
        items.reverse()
    if buckets is not None:
        items = items[-buckets:]
    return Timeline(
        bucket_seconds=width // 1000 if width else None,
        stages=STAGES,
        buckets=items,
        as_of=format_ts(now_ms(settings)),
    )
