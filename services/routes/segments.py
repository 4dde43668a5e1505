"""GET /v1/segments/stage/{stage}, /v1/segments/tier/{tier}, /v1/segments/rfm/{segment} and
GET /v1/stats."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from services.auth import require
from services.clock import now_ms as clock_now_ms
from services.cursors import decode_cursor, encode_cursor
from services.deps import SettingsDep, ViewDep, get_policy
from services.errors import error_responses, invalid_choice
from services.models import SegmentPage, Stage, Stats, WarningCounts
from services.settings import ApiSettings
from services.view import View
from streams.core.eventtime import format_ts
from streams.view import keys as viewkeys

router = APIRouter(prefix="/v1", tags=["segments"])

_TIER_DOC = (
    "A tier of the policy (the defaults: bronze, silver, gold, platinum); another name is a 422."
)
TierName = Annotated[str, Path(min_length=1, max_length=32, description=_TIER_DOC)]
TierFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=32, description="Only users in this tier. " + _TIER_DOC),
]
Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
Cursor = Annotated[
    str | None,
    Query(max_length=1024, description="`next_cursor` of the previous page (opaque)."),
]
_RFM_DOC = (
    "An RFM value segment of the policy (the defaults: important_value, important_development, "
    "important_retention, important_win_back, general_value, general_development, "
    "general_retention, general_win_back); another name is a 422."
)
RfmName = Annotated[str, Path(min_length=1, max_length=64, description=_RFM_DOC)]
RfmFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="Only users in this RFM segment. " + _RFM_DOC),
]
MinRisk = Annotated[
    float | None, Query(ge=0, le=1, description="Only users with risk_score >= min_risk.")
]


async def check_tier(request: Request, view: View, prefix: str, tier: str, loc: str) -> None:
    """Raises the 422 for a tier that is neither the policy's nor held by a user in the view.

    The second test keeps an API started without the worker's policy file (the built-in
    tiers) answering for the tiers that the worker's policy gives its users.
    """
    tiers = get_policy(request).tier_names
    if tier in tiers or await view.redis.hexists(viewkeys.tier_counts_key(prefix), tier):
        return
    raise invalid_choice((loc, "tier"), tier, tiers, "a tier of the policy")


async def _check_rfm(request: Request, view: View, prefix: str, segment: str, loc: str) -> None:
    """Raises the 422 for an RFM segment that is neither the policy's nor held in the view."""
    names = tuple(get_policy(request).rfm.segments.values())
    if segment in names or await view.redis.hexists(viewkeys.rfm_counts_key(prefix), segment):
        return
    raise invalid_choice(
        (loc, "segment" if loc == "path" else "rfm"), segment, names, "an RFM segment of the policy"
    )


async def _page(
    view: View,
    settings: ApiSettings,
    context: str,
    key: str,
    filter_key: str | list[str] | None,
    min_risk: float | None,
    limit: int,
    cursor: str | None,
) -> SegmentPage:
    secret = settings.cursor_key()
    after = decode_cursor(secret, context, cursor) if cursor else None
    page = await view.segment_page(key, filter_key, min_risk, limit, after)
    nxt = page.next_position
    return SegmentPage.model_validate(
        {
            "items": page.items,
            "next_cursor": encode_cursor(secret, context, nxt) if nxt is not None else None,
        }
    )


async def _filters(
    request: Request,
    view: View,
    prefix: str,
    *,
    stage: Stage | None = None,
    tier: str | None = None,
    rfm: str | None = None,
) -> list[str] | None:
    """The segment keys a list is narrowed to by its query filters (None: not narrowed),
    after the 422 for a tier or RFM segment the policy does not know."""
    keys = []
    if stage is not None:
        keys.append(viewkeys.stage_segment_key(prefix, stage.value))
    if tier is not None:
        await check_tier(request, view, prefix, tier, "query")
        keys.append(viewkeys.tier_segment_key(prefix, tier))
    if rfm is not None:
        await _check_rfm(request, view, prefix, rfm, "query")
        keys.append(viewkeys.rfm_segment_key(prefix, rfm))
    return keys or None


@router.get(
    "/segments/stage/{stage}",
    response_model=SegmentPage,
    dependencies=[Depends(require("read"))],
    responses=error_responses(400, 401, 403, 422),
    summary="Users in a lifecycle stage",
)
async def stage_segment(
    stage: Stage,
    request: Request,
    view: ViewDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    tier: TierFilter = None,
    min_risk: MinRisk = None,
    rfm: RfmFilter = None,
) -> SegmentPage:
    """Users in `stage` by risk descending, then user id ascending; optionally only those in
    `tier`, in RFM segment `rfm` and with risk >= `min_risk`. Pass `next_cursor` back as
    `cursor` for the next page (with the same filters; 400 invalid_cursor otherwise). An
    unknown stage, tier or RFM segment is a 422 validation_error whose message lists the
    allowed values."""
    p = settings.view_prefix
    filters = await _filters(request, view, p, tier=tier, rfm=rfm)
    context = f"stage\x1f{stage.value}\x1f{tier or ''}\x1f{min_risk!r}\x1f{rfm or ''}"
    return await _page(
        view,
        settings,
        context,
        viewkeys.stage_segment_key(p, stage.value),
        filters,
        min_risk,
        limit,
        cursor,
    )


@router.get(
    "/segments/tier/{tier}",
    response_model=SegmentPage,
    dependencies=[Depends(require("read"))],
    responses=error_responses(400, 401, 403, 422),
    summary="Users in a tier",
)
async def tier_segment(
    tier: TierName,
    request: Request,
    view: ViewDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    stage: Stage | None = None,
    min_risk: MinRisk = None,
    rfm: RfmFilter = None,
) -> SegmentPage:
    """Users in `tier` by risk descending, then user id ascending; optionally only those in
    `stage`, in RFM segment `rfm` and with risk >= `min_risk`. Tiers come from the policy: an
    unknown tier, stage or RFM segment is a 422 validation_error whose message lists the
    allowed values. Cursors as for the stage lists."""
    p = settings.view_prefix
    await check_tier(request, view, p, tier, "path")
    filters = await _filters(request, view, p, stage=stage, rfm=rfm)
    context = f"tier\x1f{tier}\x1f{stage.value if stage else ''}\x1f{min_risk!r}\x1f{rfm or ''}"
    return await _page(
        view,
        settings,
        context,
        viewkeys.tier_segment_key(p, tier),
        filters,
        min_risk,
        limit,
        cursor,
    )


@router.get(
    "/segments/rfm/{segment}",
    response_model=SegmentPage,
    dependencies=[Depends(require("read"))],
    responses=error_responses(400, 401, 403, 422),
    summary="Users in an RFM value segment",
)
async def rfm_segment(
    segment: RfmName,
    request: Request,
    view: ViewDep,
    settings: SettingsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    stage: Stage | None = None,
    tier: TierFilter = None,
    min_risk: MinRisk = None,
) -> SegmentPage:
    """Users in RFM value segment `segment` (see docs/rfm.md) by risk descending, then user id
    ascending; optionally only those in `stage`, in `tier` and with risk >= `min_risk`.
    Segment names come from the policy: an unknown one is a 422 validation_error whose
    message lists the allowed values. Cursors as for the stage lists."""
    p = settings.view_prefix
    await _check_rfm(request, view, p, segment, "path")
    filters = await _filters(request, view, p, stage=stage, tier=tier)
    context = f"rfm\x1f{segment}\x1f{stage.value if stage else ''}\x1f{tier or ''}\x1f{min_risk!r}"
    return await _page(
        view,
        settings,
        context,
        viewkeys.rfm_segment_key(p, segment),
        filters,
        min_risk,
        limit,
        cursor,
    )


def _rank(request: Request) -> Callable[[str], tuple[int, str]]:
    """A sort key putting tiers in the policy's rank order (unknown ones last, by name)."""
    ranks = {name: i for i, name in enumerate(get_policy(request).tier_names)}
    return lambda tier: (ranks.get(tier, len(ranks)), tier)


@router.get(
    "/stats",
    response_model=Stats,
    dependencies=[Depends(require("read"))],
    responses=error_responses(401, 403),
    summary="Users per stage and tier, recent warnings",
)
async def stats(request: Request, view: ViewDep, settings: SettingsDep) -> Stats:
    """User counts per stage (every stage, zero-filled, in the lifecycle's order), per tier
    (in the policy's rank order, lowest first; a tier the policy does not know comes last) and
    per RFM value segment (every segment of the policy, zero-filled), from the view's count
    hashes, and churn warnings in the last hour and day.

    Warnings are counted by their *event time* (the zset score, epoch ms) against the API's
    event-time clock (services/clock.py: wall time, or the demo's accelerated clock that the
    worker runs too): `last_hour` is ZCOUNT [now - 1 h, +inf], and `as_of` is that "now".
    Warnings stamped with a clock far from it (a replay) are counted by their own time, not
    by when they were emitted. The view keeps two days of warnings.
    """
    now_ms = clock_now_ms(settings)
    stage_counts, tier_counts, hour, day = await view.stats(now_ms)
    stages = {s.value: 0 for s in Stage}
    stages.update({k: int(v) for k, v in stage_counts.items()})
    segments = {name: 0 for name in get_policy(request).rfm.segments.values()}
    segments.update(await view.rfm_counts())
    return Stats(
        users=sum(stages.values()),
        stages=stages,
        tiers={k: int(tier_counts[k]) for k in sorted(tier_counts, key=_rank(request))},
        rfm_segments=segments,
        warnings=WarningCounts(last_hour=hour, last_day=day),
        as_of=format_ts(now_ms),
    )
