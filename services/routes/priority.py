"""GET /v1/segments/priority: whom to act on, the users of a stage (at_risk by default) by
risk x value, with what an operator decides by (silence, stage age, value, holdout group)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request

from services.auth import require
from services.clock import now_ms
from services.cursors import Position, decode_cursor, encode_cursor
from services.deps import SettingsDep, ViewDep, get_policy
from services.errors import ApiError, error_responses
from services.models import PriorityItem, PriorityPage, Stage
from services.routes.segments import Cursor, Limit, TierFilter, check_tier
from streams.core.eventtime import DAY_MS, day_of, format_ts
from streams.core.holdout import Group, assign_group
from streams.core.policy import Policy
from streams.core.state import UserState
from streams.core.windows import spend_in
from streams.view import keys as viewkeys

router = APIRouter(prefix="/v1/segments", tags=["segments"])

# (priority desc, risk desc, user id asc): a key that sorts ascending in that order.
SortKey = tuple[float, float, str]


def item(state: UserState, policy: Policy, now: int) -> PriorityItem:
    """The user's row. Value is the spend over the policy's tier window as of the user's own
    clock (the figure the tier is decided on; the document's 90-day spend by default)."""
    value = spend_in(state.buckets, day_of(state.evaluated_at), policy.tier_window_days) / 100
    group = state.recall_group or assign_group(state.user_id, policy)
    silent = None
    if state.last_active is not None:
        silent = round(max(0, now - state.last_active) / DAY_MS, 2)
    return PriorityItem(
        user_id=state.user_id,
        stage=state.stage,
        stage_since=format_ts(state.stage_since),
        tier=state.tier,
        risk_score=state.risk,
        value=value,
        priority=round(state.risk * value, 6),
        last_active=format_ts(state.last_active) if state.last_active is not None else None,
        silent_days=silent,
        group="holdout" if group == Group.HOLDOUT else "treated",
        do_not_contact=group == Group.HOLDOUT,
    )


def sort_key(i: PriorityItem) -> SortKey:
    return (-i.priority, -i.risk_score, i.user_id)


# The signed cursor holds the last item's priority and, in its user-id slot, [risk, user id]
# as JSON: the page after it starts strictly after that sort key.
def _cursor_position(i: PriorityItem) -> Position:
    return Position(i.priority, json.dumps([i.risk_score, i.user_id]))


def _after(pos: Position) -> SortKey:
    try:
        risk, user_id = json.loads(pos.user_id)
        return (-pos.risk, -float(risk), str(user_id))
    except (ValueError, TypeError):
        raise ApiError(400, "invalid_cursor", "the cursor is not valid for this list") from None


@router.get(
    "/priority",
    response_model=PriorityPage,
    dependencies=[Depends(require("read"))],
    responses=error_responses(400, 401, 403, 422),
    summary="Whom to act on: users by risk x value",
)
async def priority(
    request: Request,
    view: ViewDep,
    settings: SettingsDep,
    stage: Stage = Stage.at_risk,
    tier: TierFilter = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> PriorityPage:
    """The users in `stage` (at_risk unless given; optionally only `tier`) by risk x value
    descending, then risk descending, then user id: value is the spend over the policy's tier
    window (90 days by default). Each with the stage and since when, days silent as of the
    event-time clock, last activity, and the holdout group: holdout users are marked
    `do_not_contact` (the control group of the recall measurement). Pass `next_cursor` back
    as `cursor` for the next page (same filters; 400 invalid_cursor otherwise).

    Unlike the segment lists this reads every user of the stage to order them (the view
    indexes stages by risk alone): its cost grows with the stage's size.
    """
    policy = get_policy(request)
    p = settings.view_prefix
    if tier is not None:
        await check_tier(request, view, p, tier, "query")
    context = f"priority\x1f{stage.value}\x1f{tier or ''}"
    secret = settings.cursor_key()
    after = _after(decode_cursor(secret, context, cursor)) if cursor else None
    now = now_ms(settings)
    states = await view.segment_states(viewkeys.stage_segment_key(p, stage.value))
    rows = sorted(
        (item(s, policy, now) for s in states if tier is None or s.tier == tier), key=sort_key
    )
    if after is not None:
        rows = [r for r in rows if sort_key(r) > after]
    page = rows[:limit]
    nxt = encode_cursor(secret, context, _cursor_position(page[-1])) if len(rows) > limit else None
    return PriorityPage(
        items=page,
        next_cursor=nxt,
        value_window_days=policy.tier_window_days,
        as_of=format_ts(now),
    )
