"""The Redis materialized view: the worker writes each user's current state there for the API.

The view is derived data. Writes are compare-and-set on the state's version inside one Lua
script that also moves the user between segment sets and adjusts the counts, so the per-user
hash and the indexes never disagree and a stale write (older version, e.g. after a rebalance or
a replay) never overwrites a newer one. Key layout: streams/viewkeys.py.

`ViewWriter` decouples the stream from Redis: the agent hands over states without awaiting
Redis; a background task coalesces them per user and writes in pipelines, retrying with
backoff while Redis is away, so processing never stalls on the view. When Redis comes back
without the view (the epoch token it saw is gone), it writes its users again from the table.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams import metrics
from streams.outputs import Output
from streams.policy import Policy
from streams.recall import cell_counts
from streams.snapshot import snapshot
from streams.state import UserState
from streams.viewkeys import (
    TRANSITIONS_KEPT,
    WARNINGS_KEPT_MS,
    epoch_key,
    recall_counts_key,
    stage_counts_key,
    tier_counts_key,
    transitions_key,
    user_key,
    warnings_key,
)

log = logging.getLogger("pulse.view")
_json = msgspec.json.Encoder()

# Takes the user out of the segment sets and counts of its current stage and tier
# (KEYS[1] user, KEYS[3] stage counts, KEYS[4] tier counts; p = prefix, uid = user id).
_LEAVE_SEGMENTS = """
local old = redis.call('HMGET', KEYS[1], 'stage', 'tier')
if old[1] then
  redis.call('ZREM', p .. ':seg:stage:' .. old[1], uid)
  if redis.call('HINCRBY', KEYS[3], old[1], -1) <= 0 then redis.call('HDEL', KEYS[3], old[1]) end
end
if old[2] then
  redis.call('ZREM', p .. ':seg:tier:' .. old[2], uid)
  if redis.call('HINCRBY', KEYS[4], old[2], -1) <= 0 then redis.call('HDEL', KEYS[4], old[2]) end
end
"""

# Moves the user's recall tally (KEYS[1] field `recall`) to `new_recall` in the totals
# (KEYS[6]): the old cells leave, the new ones join, so the totals are always the sum of the
# tallies the view holds, whatever order or how often writes arrive.
_MOVE_RECALL = """
local function recall_cells(text, sign)
  if not text or text == '' then return end
  for _, c in ipairs(cjson.decode(text)) do
    local f = c[1] .. '|' .. c[2] .. '|' .. c[3] .. '|' .. c[4]
    if redis.call('HINCRBY', KEYS[6], f, sign * c[5]) <= 0 then redis.call('HDEL', KEYS[6], f) end
  end
end
local old_recall = redis.call('HGET', KEYS[1], 'recall') or ''
if old_recall ~= new_recall then
  recall_cells(old_recall, -1)
  recall_cells(new_recall, 1)
end
"""

# KEYS: user, transitions, stage counts, tier counts, warnings, recall counts
# ARGV: prefix, user_id, version, stage, tier, risk, doc, outputs (JSON list of
#       [kind, idempotency_key, event_time_ms, document]), transitions kept, warnings kept ms,
#       recall tally (JSON, '' when never warned)
WRITE_LUA = (
    """
local cur = redis.call('HGET', KEYS[1], 'version')
if cur and tonumber(cur) > tonumber(ARGV[3]) then return 0 end
local p, uid, new_recall = ARGV[1], ARGV[2], ARGV[11]
local same = cur and tonumber(cur) == tonumber(ARGV[3])
if same then
  -- The same state again: a redelivery, a resync or a rebuild. Only a rebuild brings outputs
  -- the list lacks (the view lost them, the state came back without them); its outputs are
  -- the user's latest from the topics, so they replace the list.
  local outs = cjson.decode(ARGV[8])
  if #outs == 0 then return 0 end
  local have = {}
  for _, doc in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    have[cjson.decode(doc)['idempotency_key']] = true
  end
  local missing = false
  for _, out in ipairs(outs) do
    if not have[out[2]] then missing = true end
  end
  if not missing then return 0 end
  redis.call('DEL', KEYS[2])
end
if not same then
"""
    + _LEAVE_SEGMENTS
    + _MOVE_RECALL
    + """
  redis.call('HSET', KEYS[1], 'version', ARGV[3], 'stage', ARGV[4], 'tier', ARGV[5],
             'risk', ARGV[6], 'doc', ARGV[7])
  if new_recall == '' then redis.call('HDEL', KEYS[1], 'recall')
  else redis.call('HSET', KEYS[1], 'recall', new_recall) end
  redis.call('ZADD', p .. ':seg:stage:' .. ARGV[4], ARGV[6], uid)
  redis.call('ZADD', p .. ':seg:tier:' .. ARGV[5], ARGV[6], uid)
  redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
  redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
end
local warned = false
for _, out in ipairs(cjson.decode(ARGV[8])) do
  redis.call('LPUSH', KEYS[2], out[4])
  if out[1] == 'churn_warning' then
    redis.call('ZADD', KEYS[5], out[3], out[2])
    warned = true
  end
end
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[9]) - 1)
if warned then
  -- relative to the newest warning kept, so the result does not depend on write order
  local newest = redis.call('ZRANGE', KEYS[5], 0, 0, 'REV', 'WITHSCORES')[2]
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. (tonumber(newest) - tonumber(ARGV[10])))
end
return 1
"""
)

# KEYS: as for WRITE_LUA; ARGV: prefix, user_id
ERASE_LUA = (
    """
local p, uid, new_recall = ARGV[1], ARGV[2], ''
"""
    + _LEAVE_SEGMENTS
    + _MOVE_RECALL
    + """
return redis.call('DEL', KEYS[1], KEYS[2])
"""
)


def view_doc(state: UserState, policy: Policy) -> dict[str, Any]:
    """The document stored for a user: the snapshot as of the user's own clock.

    `updated_at` is the event time of the last change (not wall time), so a view rebuilt from
    Kafka is identical to the one written live.
    """
    doc = snapshot(state, state.evaluated_at, policy)
    doc["updated_at"] = doc["as_of"]
    return doc


def recall_doc(state: UserState) -> str:
    """The user's recall tally as the view stores it: JSON [[group, tier, reason, outcome,
    warnings], ...] in a fixed order ('' when the user was never warned)."""
    cells = sorted(cell_counts(state.recall_tally).items())
    return _json.encode([[*k, n] for k, n in cells]).decode() if cells else ""


# An output with the exact JSON published for it (the transitions list keeps those bytes).
Published = tuple[Output, str]


@dataclass
class _Pending:
    state: UserState | None  # None: erase
    outputs: list[Published] = field(default_factory=list)


class View:
    """Scripts bound to one Redis client and key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str, policy: Policy) -> None:
        self.client = client
        self.prefix = prefix
        self.policy = policy
        self._write = client.register_script(WRITE_LUA)
        self._erase = client.register_script(ERASE_LUA)

    def _keys(self, user_id: str) -> list[str]:
        p = self.prefix
        return [
            user_key(p, user_id),
            transitions_key(p, user_id),
            stage_counts_key(p),
            tier_counts_key(p),
            warnings_key(p),
            recall_counts_key(p),
        ]

    def write_args(self, state: UserState, outputs: list[Published]) -> tuple[list[str], list[Any]]:
        outs = [[o.kind, o.idempotency_key, o.ts, wire] for o, wire in outputs]
        args: list[Any] = [
            self.prefix,
            state.user_id,
            state.version,
            state.stage,
            state.tier,
            state.risk,
            _json.encode(view_doc(state, self.policy)).decode(),
            _json.encode(outs).decode(),
            TRANSITIONS_KEPT,
            WARNINGS_KEPT_MS,
            recall_doc(state),
        ]
        return self._keys(state.user_id), args

    async def write(self, state: UserState, outputs: list[Published]) -> bool:
        """Compare-and-set one user's state; False when the view already has a newer version."""
        keys, args = self.write_args(state, outputs)
        return bool(await self._write(keys=keys, args=args))

    async def erase(self, user_id: str) -> None:
        await self._erase(keys=self._keys(user_id), args=[self.prefix, user_id])

    async def write_many(self, items: dict[str, _Pending]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for user_id, item in items.items():
            if item.state is None:
                await self._erase(
                    keys=self._keys(user_id), args=[self.prefix, user_id], client=pipe
                )
            else:
                keys, args = self.write_args(item.state, item.outputs)
                await self._write(keys=keys, args=args, client=pipe)
        await pipe.execute()


# The users a worker writes again when Redis lost the view: its own users' current states, a
# chunk at a time (read from the table as each chunk is taken, so never older than the table).
Resync = Callable[[], Iterable[list[UserState]]]


class ViewWriter:
    """Coalesces view updates per user and writes them in the background, retrying on errors.

    It also notices when Redis lost the view (restarted without persistence, flushed): the
    `{p}:epoch` token it saw last is gone or replaced. It then writes every user of `resync`
    again, so users without news since the loss come back too, not only those updated after.
    Compare-and-set on versions makes those writes harmless where the view is already current.
    """

    def __init__(
        self,
        view: View,
        interval_s: float = 0.05,
        max_backoff_s: float = 5.0,
        resync: Resync | None = None,
        epoch_check_s: float = 1.0,
    ) -> None:
        self.view = view
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self.pending: dict[str, _Pending] = {}
        self.resync = resync
        self.epoch_check_s = epoch_check_s
        self.epoch: bytes | None = None  # the token seen last; None: not looked yet
        self._epoch_due = 0.0  # loop time of the next look

    def put(self, state: UserState, outputs: list[Published]) -> None:
        item = self.pending.get(state.user_id)
        if item is None or item.state is None:
            self.pending[state.user_id] = _Pending(state, list(outputs))
        else:
            item.state = state
            item.outputs.extend(outputs)
        metrics.VIEW_PENDING.set(len(self.pending))

    def refresh(self, state: UserState) -> None:
        """Queue `state` again (no outputs) unless a newer version or an erasure is pending."""
        item = self.pending.get(state.user_id)
        if item is None:
            self.pending[state.user_id] = _Pending(state)
        elif item.state is not None and item.state.version < state.version:
            item.state = state

    def erase(self, user_id: str) -> None:
        self.pending[user_id] = _Pending(None)
        metrics.VIEW_PENDING.set(len(self.pending))

    async def flush(self) -> None:
        """Write everything pending; on failure put it back (newer updates win) and raise."""
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        try:
            await self.view.write_many(batch)
        except (RedisError, OSError):
            for user_id, item in batch.items():
                newer = self.pending.get(user_id)
                if newer is None:
                    self.pending[user_id] = item
                elif newer.state is not None and item.state is not None:
                    newer.outputs[:0] = item.outputs
            raise
        finally:
            metrics.VIEW_PENDING.set(len(self.pending))
        metrics.VIEW_WRITES.inc(len(batch))

    async def read_epoch(self) -> bytes | None:
        """The view's epoch token, made by this writer when there is none."""
        client, key = self.view.client, epoch_key(self.view.prefix)
        # A fresh token each time: this writer may be the one that made the token Redis lost.
        # SET NX: when several workers find it missing, one token wins and all read that one.
        await client.set(key, secrets.token_hex(16), nx=True)
        value: bytes | str | None = await client.get(key)
        return value.encode() if isinstance(value, str) else value

    async def check_epoch(self) -> bool:
        """Look at the epoch; when it changed since the last look, write every user again.

        True when it did. The first look only learns the token: what a worker wrote before it
        started is its predecessors' business (`pulse rebuild-view` after a loss while no worker
        ran). The token is adopted only once the users are written, so a resync cut short by
        another outage starts again at the next look.
        """
        current = await self.read_epoch()
        lost = self.epoch is not None and current != self.epoch
        if lost and self.resync is not None:
            log.warning("Redis lost the view (new epoch token); writing this worker's users again")
            users = 0
            for chunk in self.resync():
                for state in chunk:
                    self.refresh(state)
                users += len(chunk)
                await self.flush()
            metrics.VIEW_RESYNCS.inc()
            metrics.VIEW_RESYNCED_USERS.inc(users)
            log.warning("view resync done: %d users written again", users)
        self.epoch = current
        return lost

    async def run(self) -> None:
        backoff = self.interval_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(backoff)
            try:
                await self.flush()
                if loop.time() >= self._epoch_due:
                    await self.check_epoch()
                    self._epoch_due = loop.time() + self.epoch_check_s
                backoff = self.interval_s
            except (RedisError, OSError) as exc:
                metrics.VIEW_WRITE_FAILURES.inc()
                # Redis may come back empty: look at the epoch as soon as a write gets through.
                self._epoch_due = 0.0
                backoff = min(self.max_backoff_s, max(backoff * 2, 0.1))
                log.warning("Redis view write failed (%s); retrying in %.1fs", exc, backoff)
