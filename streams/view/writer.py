"""The Redis materialized view: the worker writes each user's current state there for the API.

The view is derived data. What the worker writes is what it already has: the state's bytes as
the table's changelog holds them (streams.core.state.encode_state) and the few fields the
indexes need (version, stage, tier, risk, recall cells); the API builds the user's document
from those bytes on read (streams.core.snapshot.user_document), so the stream pays for no
document it may never serve. Writes are compare-and-set on the state's version inside one Lua
script that also moves the user between segment sets and adjusts the counts when, and only
when, a value they index changed, so the per-user hash and the indexes never disagree and a
stale write (older version, e.g. after a rebalance or a replay) never overwrites a newer one.
The same script counts the lifecycle timeline (users entering and leaving each stage per
event-time bucket) from the outputs of the writes it applies, so a stale or repeated write
counts nothing. Key layout: streams/view/keys.py.

`ViewWriter` decouples the stream from Redis: the agent hands over states without awaiting
Redis; a background task coalesces them per user and writes in pipelines, retrying with
backoff while Redis is away, so processing never stalls on the view. When Redis comes back
without the view (the epoch token it saw is gone), it writes its users again from the table.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from streams import metrics
from streams.core.outputs import Kind, Output
from streams.core.recall import cell_counts
from streams.core.retention import (
    DAY,
    MAX_DAYS,
    MAX_WEEKS,
    WEEK,
    Cohorted,
    parts,
    period_moves,
    week_of,
)
from streams.core.state import RecallCell, UserState, encode_state
from streams.view.keys import (
    TIMELINE_BUCKET_MS,
    TIMELINE_BUCKETS,
    TRANSITIONS_KEPT,
    WARNINGS_KEPT_MS,
    epoch_key,
    retention_key,
    timeline_field,
)

log = logging.getLogger("pulse.view")
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()

# One script call writes or erases a batch of users (a msgpack array; see View.write_many): a
# round trip and a command per batch, not per user. Key names follow streams/view/keys.py.
# ARGV: prefix, transitions kept, warnings kept ms, the batch, the timeline's bucket width
#   (ms) and buckets kept. The batch is one flat array, read by position: the msgpack
#   library inside Redis grows every array it makes one element at a time, and a table per
#   user and per output cost more than the work the script does with them. A user's write is
#   'w', uid, version, stage, tier, risk, state, recall, retention, rfm,
#   n, shift (n elements), m, outputs (m times: kind, idempotency_key, event_time_ms,
#   document, timeline field)
#   (state: the encode_state bytes; recall: JSON, '' when never warned; retention: JSON, ''
#   without a cohort; rfm: the RFM segment, '' without one; shift: how the retention counts
#   move from the part the worker believes the view holds, none when it does not know or they
#   do not move (View.shift); timeline field: 'from>to' for a stage change, else ''); an
#   erasure is 'e', uid.
#   Numbers travel as strings: Lua would print big ones in exponent form, and the risk's text
#   is compared as it was stored.
# Returns how many user states it wrote (a state at or below the view's version is not).
#
# Most writes change a user's windows and counters, not their stage, tier or recall cells,
# and often not their risk: those writes are one HMGET and one HSET. Segment sets and counts
# move only when a value they index changed; that is exact because this script is their only
# writer and changes them together with the hash.
BATCH_LUA = """
local p, kept, warn_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local batch = cmsgpack.unpack(ARGV[4])
local stage_counts, tier_counts = p .. ':count:stage', p .. ':count:tier'
local warnings, recall_counts = p .. ':warnings', p .. ':count:recall'

-- A number passed to redis.call is turned into text with sprintf ('%.17g'), and `'a' .. k`
-- formats k the same way ('%.14g'): over a thousand instructions each. Field names are made
-- once per call, and counts go as text made with '%d' (apply_counts).
local ACTIVE_IN, ACTIVE_SINCE = {}, {}
for k = 0, 63 do ACTIVE_IN[k], ACTIVE_SINCE[k] = 'a' .. k, 's' .. k end
setmetatable(ACTIVE_IN, {__index = function(_, k) return 'a' .. k end})
setmetatable(ACTIVE_SINCE, {__index = function(_, k) return 's' .. k end})

-- Counts (stage, tier, RFM and recall totals, retention cohorts, timeline buckets) move by
-- deltas gathered over the whole call and applied once at its end (apply_counts): one HMGET
-- and one HSET per count hash touched, instead of a command per user and field. A command
-- from a script costs several times what reading or writing a field does, and the 500 users
-- of a call share a few count hashes. The result is what applying each delta as it came
-- would leave (a count at zero or below goes), because this script is the counts' only writer
-- and the call is atomic.
local counted, counted_keys = {}, {}
local function bump(key, f, n)
  local d = counted[key]
  if not d then
    d = {fields = {}, delta = {}}
    counted[key] = d
    counted_keys[#counted_keys + 1] = key
  end
  local had = d.delta[f]
  if had == nil then
    d.fields[#d.fields + 1] = f
    d.delta[f] = n
  else
    d.delta[f] = had + n
  end
end

local function apply_counts()
  for _, key in ipairs(counted_keys) do
    local d = counted[key]
    if d then
      local fields = {}
      for _, f in ipairs(d.fields) do
        if d.delta[f] ~= 0 then fields[#fields + 1] = f end
      end
      if #fields > 0 then
        local have = redis.call('HMGET', key, unpack(fields))
        local set, gone = {}, {}
        for i, f in ipairs(fields) do
          local n = (tonumber(have[i]) or 0) + d.delta[f]
          if n > 0 then
            set[#set + 1] = f
            set[#set + 1] = string.format('%d', n)
          else
            gone[#gone + 1] = f
          end
        end
        if #set > 0 then redis.call('HSET', key, unpack(set)) end
        if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
      end
    end
  end
end

-- Takes the user out of one segment set and its count (value false: the user had none).
local function leave(kind, counts, value, uid)
  if not value then return end
  redis.call('ZREM', p .. ':seg:' .. kind .. ':' .. value, uid)
  bump(counts, value, -1)
end

-- Puts the user in the segment set of `value` (scored by risk) and its count, leaving the
-- one of `old` first; when the value is the same, only a new risk re-scores the member.
local function move(kind, counts, old, value, old_risk, risk, uid)
  if old == value then
    if old_risk ~= risk then redis.call('ZADD', p .. ':seg:' .. kind .. ':' .. value, risk, uid) end
    return
  end
  leave(kind, counts, old, uid)
  redis.call('ZADD', p .. ':seg:' .. kind .. ':' .. value, risk, uid)
  bump(counts, value, 1)
end

-- RFM value segments (streams/core/rfm.py): the user's segment in their hash's `rfm` field
-- (absent: none), the set {p}:seg:rfm:<segment> scored by risk, and {p}:count:rfm. Moved only
-- where the state's version advances, like the stage and tier sets. Answers whether the
-- hash's field changes.
local rfm_counts = p .. ':count:rfm'
local function rfm_move(uid, old, segment, old_risk, risk)
  if old == segment then
    if segment ~= '' and old_risk ~= risk then
      redis.call('ZADD', p .. ':seg:rfm:' .. segment, risk, uid)
    end
    return false
  end
  if old ~= '' then leave('rfm', rfm_counts, old, uid) end
  if segment ~= '' then
    redis.call('ZADD', p .. ':seg:rfm:' .. segment, risk, uid)
    bump(rfm_counts, segment, 1)
  end
  return true
end

local function recall_cells(text, sign)
  if not text or text == '' then return end
  for _, c in ipairs(cjson.decode(text)) do
    bump(recall_counts, c[1] .. '|' .. c[2] .. '|' .. c[3] .. '|' .. c[4], sign * c[5])
  end
end

-- Retention cohorts (streams/core/retention.py; keys in streams/view/keys.py): per cohort a
-- hash of n (users), a<k> (active in period k), s<k> (active in period k or later), and per
-- period the zset of cohorts with users. Like the recall totals they follow the user's own
-- part (the hash's `retention` field, JSON [[period, cohort, [k active...], last k], ...]):
-- the old part leaves, the new one joins, so the counts are the sum of the parts the view
-- holds. Called only where the state's version advances, so a redelivery counts nothing.
-- A cohort a user joined or left is listed in its period's index, or taken out of it, once
-- its counts are applied (retention_indexes).
local cohorts_moved, cohorts_listed = {}, {}
local function retention_part(text, sign)
  if not text or text == '' then return end
  for _, c in ipairs(cjson.decode(text)) do
    local index = p .. ':retention:' .. c[1]
    local key = index .. ':' .. c[2]
    bump(key, 'n', sign)
    for _, k in ipairs(c[3]) do bump(key, ACTIVE_IN[k], sign) end
    for k = 0, c[4] do bump(key, ACTIVE_SINCE[k], sign) end
    if not cohorts_listed[key] then
      cohorts_listed[key] = true
      cohorts_moved[#cohorts_moved + 1] = {index, c[2], key}
    end
  end
end

local function retention_indexes()
  for _, m in ipairs(cohorts_moved) do
    -- the score is the cohort's number, given as its text so Lua does not format it
    if redis.call('EXISTS', m[3]) == 0 then redis.call('ZREM', m[1], m[2])
    else redis.call('ZADD', m[1], m[2], m[2]) end
  end
end

-- The same cohort before and after (the usual change: one more period active): only the
-- fields that differ move, not the whole part out and back in. `n` and the cohort's place in
-- its index stay as they are: this user is counted in it before and after.
local function retention_shift(a, b)
  local key = p .. ':retention:' .. a[1] .. ':' .. a[2]
  local had, has = {}, {}
  for _, k in ipairs(a[3]) do had[k] = true end
  for _, k in ipairs(b[3]) do
    has[k] = true
    if not had[k] then bump(key, ACTIVE_IN[k], 1) end
  end
  for _, k in ipairs(a[3]) do if not has[k] then bump(key, ACTIVE_IN[k], -1) end end
  for k = a[4] + 1, b[4] do bump(key, ACTIVE_SINCE[k], 1) end
  for k = b[4] + 1, a[4] do bump(key, ACTIVE_SINCE[k], -1) end
end

-- The same move given by the worker, the ns elements of the batch from batch[s] (View.shift: the
-- part it moves from, then cohort key, fields, field, delta, ... per cohort), used when the
-- view holds that part: no JSON to decode.
local function retention_deltas(s, ns)
  local i, last = s + 1, s + ns - 1
  while i <= last do
    local key, count = batch[i], batch[i + 1]
    for j = i + 2, i + 2 * count, 2 do bump(key, batch[j], batch[j + 1]) end
    i = i + 2 + 2 * count
  end
end

local function same_cohorts(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i][1] ~= b[i][1] or a[i][2] ~= b[i][2] then return false end
  end
  return true
end

-- Moves the user's part from `old` to `new` (both JSON text, '' without a cohort).
local function retention_move(old, new)
  local a = old ~= '' and cjson.decode(old) or nil
  local b = new ~= '' and cjson.decode(new) or nil
  if a and b and same_cohorts(a, b) then
    for i = 1, #a do retention_shift(a[i], b[i]) end
    return
  end
  retention_part(old, -1)
  retention_part(new, 1)
end

-- Stores the state and moves the user's indexes from `cur` (HMGET version, stage, tier, risk,
-- recall, doc, retention, rfm) to the new values. The recall totals follow the user's tally
-- (its hash's `recall` field): the old cells leave, the new ones join, so the totals are always
-- the sum of the tallies the view holds, whatever order or how often writes arrive. The hash
-- takes one HSET, and one HDEL when a field goes.
-- A changed field of the user's hash: set to `new`, or gone when `new` is ''.
local function field(set, gone, name, old, new)
  if new ~= '' then
    set[#set + 1] = name
    set[#set + 1] = new
  elseif old ~= '' then
    gone[#gone + 1] = name
  end
end

local function store(ukey, uid, cur, version, stage, tier, risk, state, new_recall, retention,
                     rfm, s, ns)
  local set = {'version', version, 'stage', stage, 'tier', tier, 'risk', risk, 'state', state}
  local gone = {}
  local old_retention = cur[7] or ''
  if old_retention ~= retention then
    if ns > 0 and batch[s] == old_retention then retention_deltas(s, ns)
    else retention_move(old_retention, retention) end
    field(set, gone, 'retention', old_retention, retention)
  end
  local old_rfm = cur[8] or ''
  if rfm_move(uid, old_rfm, rfm, cur[4], risk) then field(set, gone, 'rfm', old_rfm, rfm) end
  move('stage', stage_counts, cur[2], stage, cur[4], risk, uid)
  move('tier', tier_counts, cur[3], tier, cur[4], risk, uid)
  local old_recall = cur[5] or ''
  if old_recall ~= new_recall then
    recall_cells(old_recall, -1)
    recall_cells(new_recall, 1)
    field(set, gone, 'recall', old_recall, new_recall)
  end
  redis.call('HSET', ukey, unpack(set))
  -- A hash written before the state was stored holds the document instead: it goes.
  if cur[6] then gone[#gone + 1] = 'doc' end
  if #gone > 0 then redis.call('HDEL', ukey, unpack(gone)) end
end

-- Lifecycle timeline (issue 18; keys.py: {p}:timeline*). Users entering and leaving each
-- stage per event-time bucket, counted from the lifecycle_changed outputs of a write only when
-- that write stores a newer version of the state: the compare-and-set that keeps a stale or
-- redelivered state out also keeps its outputs from being counted twice. Populations per
-- bucket are derived on read from these counts and the stage counts (services/view.py).
local tl_width, tl_kept = tonumber(ARGV[5]), tonumber(ARGV[6])
local tl_index = p .. ':timeline'
-- Read or written once per call: the newest bucket's start (false: no bucket yet), the width.
local tl_newest, tl_width_set = nil, false
-- The buckets this call saw in the index (start -> member text): a late change into an older
-- bucket re-adds it to the index only the first time (ZADD of a member with its own score
-- changes nothing). A bucket dropped by the trim leaves it.
local tl_listed = {}

local function tl_top()
  if tl_newest == nil then
    local top = redis.call('ZRANGE', tl_index, -1, -1, 'WITHSCORES')
    tl_newest = top[2] and tonumber(top[2]) or false
  end
  return tl_newest
end

-- Adds n to `field` of the bucket starting at `start` (ms). The series keeps the newest
-- bucket and those within tl_kept widths of it: relative to the newest, so the result does
-- not depend on write order; a change older than that is not counted.
local function tl_add(start, field, n)
  local newest = tl_top()
  local span = tl_kept * tl_width
  if newest and start <= newest - span then return end
  local member = tl_listed[start]
  if not member then
    member = string.format('%d', start)
    if not newest or start > newest then
      redis.call('ZADD', tl_index, member, member)
      tl_newest = start
      local gone = redis.call('ZRANGEBYSCORE', tl_index, '-inf', string.format('%d', start - span))
      for _, old in ipairs(gone) do
        redis.call('DEL', tl_index .. ':' .. old)
        redis.call('ZREM', tl_index, old)
        tl_listed[tonumber(old)] = nil
        counted[tl_index .. ':' .. old] = nil  -- what this call counted there goes with it
      end
    elseif start < newest then
      redis.call('ZADD', tl_index, member, member)
    end
    tl_listed[start] = member
  end
  bump(tl_index .. ':' .. member, field, n)
  if not tl_width_set then
    redis.call('SET', tl_index .. ':width', string.format('%d', tl_width))
    tl_width_set = true
  end
end

-- Counts the stage changes among the m outputs of the batch from batch[o] (five elements each).
local function tl_count(o, m)
  for j = o, o + 5 * (m - 1), 5 do
    local f = batch[j + 4]
    if f ~= '' then
      local ts = tonumber(batch[j + 2])
      tl_add(ts - ts % tl_width, f, 1)
    end
  end
end

-- An erased user leaves their stage in the newest bucket (there is no event time to use).
local function tl_erase(stage)
  if not stage then return end
  local newest = tl_top()
  if newest then tl_add(newest, stage .. '>', 1) end
end

-- Whether a write of this call added a churn warning: the warnings older than the kept span
-- go once, at the end of the call (see trim_warnings).
local warned = false

-- The write at batch[i] (see the layout at the top); answers 1 when it stored the state, or when
-- the state was current and the list got outputs it lacked, else 0.
local function write(i)
  local uid, version = batch[i + 1], batch[i + 2]
  local ns = batch[i + 10]
  local m, o = batch[i + 11 + ns], i + 12 + ns  -- the outputs: m of them from batch[o]
  local ukey, tkey = p .. ':user:' .. uid, p .. ':transitions:' .. uid
  -- `doc`, not `state`: whether the hash holds a state is whether it holds no document (every
  -- write stores the state and drops the document), and the state's bytes are not copied
  -- into Lua for that.
  local cur = redis.call('HMGET', ukey, 'version', 'stage', 'tier', 'risk', 'recall', 'doc',
                        'retention', 'rfm')
  -- versions read once: a string's tonumber is a strtod
  local had, v = cur[1] and tonumber(cur[1]), tonumber(version)
  if had and had > v then return 0 end
  if not had or had < v then tl_count(o, m) end
  local written = 0
  if not (had == v and not cur[6]) then
    -- A newer version, or the same one stored as a document (a view written before the
    -- state was stored, brought up to date by a resync or a rebuild).
    store(ukey, uid, cur, version, batch[i + 3], batch[i + 4], batch[i + 5], batch[i + 6],
          batch[i + 7], batch[i + 8], batch[i + 9], i + 11, ns)
    written = 1
  end
  if had == v then
    -- The same state again: a redelivery, a resync or a rebuild. Only a rebuild brings
    -- outputs the list lacks (the view lost them, the state came back without them); its
    -- outputs are the user's latest from the topics, so they replace the list.
    if m == 0 then return written end
    local have = {}
    for _, kept_doc in ipairs(redis.call('LRANGE', tkey, 0, -1)) do
      have[cjson.decode(kept_doc)['idempotency_key']] = true
    end
    local missing = false
    for j = o, o + 5 * (m - 1), 5 do
      if not have[batch[j + 1]] then missing = true end
    end
    if not missing then return written end
    redis.call('DEL', tkey)
  end
  if m == 0 then return 1 end
  -- The outputs go in one LPUSH (oldest first: the list is newest first), in chunks of 100
  -- after a long outage (Lua's unpack has a limit); LPUSH answers the list's length, so LTRIM
  -- runs only when the list is longer than kept.
  local docs = {}
  for j = o, o + 5 * (m - 1), 5 do
    docs[#docs + 1] = batch[j + 3]
    if batch[j] == 'churn_warning' then
      redis.call('ZADD', warnings, batch[j + 2], batch[j + 1])
      warned = true
    end
  end
  local length = 0
  for k = 1, #docs, 100 do
    length = redis.call('LPUSH', tkey, unpack(docs, k, math.min(k + 99, #docs)))
  end
  if length > kept then redis.call('LTRIM', tkey, 0, kept - 1) end
  return 1
end

local function erase(uid)
  local ukey = p .. ':user:' .. uid
  local old = redis.call('HMGET', ukey, 'stage', 'tier', 'recall', 'retention', 'rfm')
  tl_erase(old[1])
  leave('stage', stage_counts, old[1], uid)
  leave('tier', tier_counts, old[2], uid)
  recall_cells(old[3], -1)
  retention_part(old[4], -1)
  rfm_move(uid, old[5] or '', '')
  redis.call('DEL', ukey, p .. ':transitions:' .. uid)
end

local written, i, n = 0, 1, #batch
while i <= n do
  if batch[i] == 'e' then
    erase(batch[i + 1])
    i = i + 2
  else
    written = written + write(i)
    local ns = batch[i + 10]
    i = i + 12 + ns + 5 * batch[i + 11 + ns]
  end
end
apply_counts()
retention_indexes()
if warned then
  -- Warnings older than the kept span before the newest warning kept go: relative to the
  -- newest, so the result does not depend on write order. Once per call, not per write: the
  -- newest only grows as warnings are added, so trimming after the last addition leaves what
  -- trimming after each would.
  local newest = redis.call('ZRANGE', warnings, 0, 0, 'REV', 'WITHSCORES')[2]
  redis.call('ZREMRANGEBYSCORE', warnings, '-inf', '(' .. (tonumber(newest) - warn_ms))
end
return written
"""


def recall_doc(state: Written) -> str:
    """The user's recall tally as the view stores it: JSON [[group, tier, reason, outcome,
    warnings], ...] in a fixed order ('' when the user was never warned)."""
    return _recall_doc(state.recall_tally) if state.recall_tally else ""


# A warned user's tally changes only at a warning or its outcome, and is written again at
# every other update; its cells are frozen, so the tally is a cache key.
@functools.lru_cache(maxsize=65_536)
def _recall_doc(tally: tuple[RecallCell, ...]) -> str:
    cells = sorted(cell_counts(tally).items())
    return _json.encode([[*k, n] for k, n in cells]).decode() if cells else ""


class _Cohorts(NamedTuple):
    """The only fields `parts` reads (streams.core.retention.Cohorted)."""

    cohort_day: int | None
    cohort_day_bits: int
    cohort_week_bits: int


def _cohorts(state: Cohorted) -> _Cohorts:
    return _Cohorts(state.cohort_day, state.cohort_day_bits, state.cohort_week_bits)


def retention_doc(state: Cohorted) -> str:
    """The user's part of the retention cohorts as the view stores it: JSON [[period, cohort,
    [periods active], last period active on or after], ...] ('' without a cohort; see
    streams.core.retention.parts). The cohort is a string: it is part of a key name."""
    return _retention_doc(state.cohort_day, state.cohort_day_bits, state.cohort_week_bits)


# Many users share these three fields (same cohort, same days active), and a write whose
# cohorts did not change asks again for the same.
@functools.lru_cache(maxsize=65_536)
def _retention_doc(day: int | None, day_bits: int, week_bits: int) -> str:
    mine = parts(_Cohorts(day, day_bits, week_bits))
    return _json.encode([[p, str(c), a, k] for p, c, a, k in mine]).decode() if mine else ""


def retention_shift(prefix: str, before: Cohorted, after: Cohorted) -> list[Any]:
    """How the user's retention counts move from `before` to `after` when both are in the same
    cohorts (the usual change: one more period active), as the script takes it: [the part
    the view must hold (retention_doc(before)), cohort key, fields, field, delta, ...,
    cohort key, ...]; [] when the cohorts differ (the script then moves the parts itself).
    The same moves as streams.core.retention.cells(after) - cells(before)."""
    day = before.cohort_day
    if day is None or day != after.cohort_day:
        return []
    shift: list[Any] = [retention_doc(before)]
    old, new = before.cohort_day_bits, after.cohort_day_bits
    if old != new and (moves := period_moves(old, new, MAX_DAYS)):
        shift += (retention_key(prefix, DAY, day), len(moves) >> 1, *moves)
    old, new = before.cohort_week_bits, after.cohort_week_bits
    if old != new and (moves := period_moves(old, new, MAX_WEEKS)):
        shift += (retention_key(prefix, WEEK, week_of(day)), len(moves) >> 1, *moves)
    return shift if len(shift) > 1 else []


# An output as the script takes it: kind, idempotency key, event time, the published JSON and
# the timeline field.
OutputItem = tuple[str, str, str, str, str]


def _encoded(state: Written) -> bytes:
    if not isinstance(state, UserState):
        raise TypeError(f"a write of {type(state).__name__} needs the state's bytes")
    return encode_state(state)


def output_item(out: Output, wire: str) -> OutputItem:
    """An output as the script takes it, with `wire` the JSON published for it; a stage change
    carries its timeline field ("from>to"), so the script counts it without decoding the
    document."""
    if out.kind == Kind.LIFECYCLE:
        field = timeline_field(out.payload["from_stage"], out.payload["to_stage"])
        return (out.kind, out.idempotency_key, str(out.ts), wire, field)
    return (out.kind, out.idempotency_key, str(out.ts), wire, "")


def _msgpack_str(data: bytes) -> msgspec.Raw:
    """`data` as a msgpack str (any bytes): the msgpack library inside Redis reads no bin
    types, and a Lua string holds any bytes."""
    n = len(data)
    if n < 32:
        head = bytes((0xA0 | n,))
    elif n < 0x100:
        head = bytes((0xD9, n))
    elif n < 0x10000:
        head = b"\xda" + n.to_bytes(2, "big")
    else:
        head = b"\xdb" + n.to_bytes(4, "big")
    return msgspec.Raw(head + data)


# An output with the exact JSON published for it (the transitions list keeps those bytes).
Published = tuple[Output, str]


def output_items(published: Iterable[Published]) -> list[OutputItem]:
    """These outputs as the script takes them."""
    return [output_item(out, wire) for out, wire in published]


class Written(Cohorted, Protocol):
    """What a view write reads of a state (UserState, or the Indexed copy a waiting update
    keeps): the cohorts and these."""

    @property
    def user_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def stage(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def risk(self) -> float: ...
    @property
    def rfm_segment(self) -> str: ...
    @property
    def recall_tally(self) -> tuple[RecallCell, ...]: ...


class Indexed(msgspec.Struct, frozen=True, gc=False):
    """The fields of a state that its view write reads, without the rest: a waiting update
    keeps this and the state's bytes, about 0.5 KB, instead of the state (about 2.6 KB in
    memory), so a longer flush interval holds little."""

    user_id: str
    version: int
    stage: str
    tier: str
    risk: float
    rfm_segment: str
    recall_tally: tuple[RecallCell, ...]
    cohort_day: int | None
    cohort_day_bits: int
    cohort_week_bits: int


def indexed(state: UserState) -> Indexed:
    return Indexed(
        state.user_id,
        state.version,
        state.stage,
        state.tier,
        state.risk,
        state.rfm_segment,
        state.recall_tally,
        state.cohort_day,
        state.cohort_day_bits,
        state.cohort_week_bits,
    )


@dataclass(slots=True)
class Pending:
    """A user's update for the view: its state (None: erase it) and new outputs."""

    state: Written | None  # None: erase
    # As the script takes them (output_items): a waiting update keeps no Output objects.
    outputs: list[OutputItem] = field(default_factory=list)
    # `encode_state(state)` when the caller has it already (the worker's changelog record):
    # the view stores the same bytes without encoding the state a second time. Required
    # when `state` is not a UserState.
    encoded: bytes | None = None
    # The state the view holds, as far as the writer knows (the state before this flush's
    # first update): the script checks it, and moves the retention counts by the deltas from
    # it without decoding the stored part. Only its cohort fields are read.
    before: Cohorted | None = None


class View:
    """The batch script bound to one Redis client and key prefix."""

    # Users per script call: a call holds Redis for its whole run (a few ms at this size),
    # and the calls of one flush share a round trip.
    BATCH = 500

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        timeline_bucket_ms: int = TIMELINE_BUCKET_MS,
        timeline_buckets: int = TIMELINE_BUCKETS,
    ) -> None:
        self.client = client
        self.prefix = prefix
        # The lifecycle timeline's bucket width and how many buckets it keeps (keys.py).
        self.timeline_bucket_ms = timeline_bucket_ms
        self.timeline_buckets = timeline_buckets
        self._batch = client.register_script(BATCH_LUA)

    def shift(self, before: Cohorted | None, after: Cohorted) -> list[Any]:
        """retention_shift(before -> after); [] when there is nothing to move."""
        if before is None or (
            before.cohort_day_bits == after.cohort_day_bits
            and before.cohort_week_bits == after.cohort_week_bits
        ):
            return []
        return retention_shift(self.prefix, before, after)

    def add_item(
        self,
        batch: list[Any],
        state: Written,
        outputs: list[OutputItem],
        encoded: bytes | None = None,
        before: Cohorted | None = None,
    ) -> None:
        """One user's write as the script takes it, appended to the flat `batch` (`encoded`:
        the state's bytes, if known; `before`: the state the view holds, if known)."""
        shift = self.shift(before, state)
        batch += (
            "w",
            state.user_id,
            str(state.version),
            state.stage,
            state.tier,
            repr(state.risk),  # the shortest text that reads back as the same float
            _msgpack_str(_encoded(state) if encoded is None else encoded),
            recall_doc(state),
            retention_doc(state),
            state.rfm_segment,
            len(shift),
        )
        if shift:
            batch += shift
        batch.append(len(outputs))
        for item in outputs:
            batch += item

    async def write(self, state: UserState, outputs: list[OutputItem]) -> bool:
        """Compare-and-set one user's state; False when the view already has a newer version."""
        return await self.write_many({state.user_id: Pending(state, outputs)}) == 1

    async def erase(self, user_id: str) -> None:
        await self.write_many({user_id: Pending(None)})

    def pack(self, items: dict[str, Pending]) -> list[bytes]:
        """These users' writes and erasures as the script's batches, BATCH users each."""
        pending = list(items.items())
        packed = []
        for start in range(0, len(pending), self.BATCH):
            batch: list[Any] = []
            for user_id, p in pending[start : start + self.BATCH]:
                if p.state is None:
                    batch += ("e", user_id)
                else:
                    self.add_item(batch, p.state, p.outputs, p.encoded, p.before)
            packed.append(_msgpack.encode(batch))
        return packed

    async def write_many(self, items: dict[str, Pending]) -> int:
        """Write or erase these users, in batches sent together; returns the states written."""
        head: list[Any] = [self.prefix, TRANSITIONS_KEPT, WARNINGS_KEPT_MS]
        timeline = [self.timeline_bucket_ms, self.timeline_buckets]
        pipe = self.client.pipeline(transaction=False)
        for packed in self.pack(items):
            await self._batch(keys=[], args=[*head, packed, *timeline], client=pipe)
        return sum(int(n) for n in await pipe.execute())


# The users a worker writes again when Redis lost the view: its own users' current states, a
# chunk at a time (read from the table as each chunk is taken, so never older than the table).
Resync = Callable[[], Iterable[list[UserState]]]


class ViewWriter:
    """Coalesces view updates per user and writes them in the background, retrying on errors.

    It writes every `interval_s` while the worker keeps up, and every `catchup_interval_s`
    while `behind()` says the worker reads a backlog: the view then trails the stream by the
    backlog whatever the interval, and a user's updates fold into fewer writes (Kafka Streams
    folds a table's updates in its cache the same way, until the commit interval). As soon as
    `max_pending` users wait, it writes at once, so the memory they hold stays bounded.

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
        catchup_interval_s: float | None = None,
        behind: Callable[[], bool] | None = None,
        max_pending: int = 10_000,
    ) -> None:
        self.view = view
        self.interval_s = interval_s
        self.catchup_interval_s = max(interval_s, catchup_interval_s or interval_s)
        self.behind = behind
        self.max_pending = max_pending
        self._written_at = float("-inf")  # loop time when the last flush that got through began
        # One flush at a time: the last one at shutdown (drain) waits for the task's, so a
        # user's older write never lands after its newer one (it would lose its outputs).
        self._flushing = asyncio.Lock()
        self.max_backoff_s = max_backoff_s
        self.pending: dict[str, Pending] = {}
        self.resync = resync
        self.epoch_check_s = epoch_check_s
        self.epoch: bytes | None = None  # the token seen last; None: not looked yet
        self._epoch_due = 0.0  # loop time of the next look
        self.in_flight = 0  # users of the flush under way
        # Read at scrape time: setting a gauge at every event took a lock per event.
        metrics.VIEW_PENDING.set_function(lambda: len(self.pending) + self.in_flight)

    def put(
        self,
        state: UserState,
        outputs: list[OutputItem],
        encoded: bytes | None = None,
        before: UserState | None = None,
    ) -> None:
        """Queue `state` and its new outputs (as `output_item` makes them: the caller converts
        each as it publishes it, and the list is the writer's from then on); `encoded` is
        `encode_state(state)` when the caller has it, `before` the user's state before this
        change (what the view holds when no other update of the user is pending)."""
        # What waits keeps only what the write reads: the state's bytes and indexed fields,
        # the outputs as the script takes them (each is converted once either way), and of
        # `before` its cohorts. Keeping the states themselves cost ~45 MB of peak RSS at 1M
        # events / 100k users with the 2 s catch-up interval.
        if encoded is None:
            encoded = encode_state(state)
        item = self.pending.get(state.user_id)
        if item is None or item.state is None:
            cohorts = None if before is None else _cohorts(before)
            self.pending[state.user_id] = Pending(indexed(state), outputs, encoded, cohorts)
        else:
            item.state = indexed(state)
            item.encoded = encoded
            item.outputs += outputs

    def refresh(self, state: UserState) -> None:
        """Queue `state` again (no outputs) unless a newer version or an erasure is pending."""
        item = self.pending.get(state.user_id)
        if item is None:
            self.pending[state.user_id] = Pending(state)
        elif item.state is not None and item.state.version < state.version:
            item.state = state
            item.encoded = None

    def erase(self, user_id: str) -> None:
        self.pending[user_id] = Pending(None)

    async def flush(self) -> None:
        """Write everything pending; on failure put it back (newer updates win) and raise."""
        async with self._flushing:
            await self._flush()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """The last flush, when the worker stops: what is pending is written, not left to the
        users' next updates. A failure or a Redis that does not answer within `timeout_s` is
        logged, so a stop never hangs on the view (it is derived: `pulse rebuild-view`)."""
        waiting = len(self.pending) + self.in_flight
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("the view's last %d updates were not written (%r)", waiting, exc)

    async def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, {}
        self.in_flight = len(batch)
        try:
            await self.view.write_many(batch)
        except (RedisError, OSError):
            for user_id, item in batch.items():
                newer = self.pending.get(user_id)
                if newer is None:
                    self.pending[user_id] = item
                elif newer.state is not None and item.state is not None:
                    newer.outputs[:0] = item.outputs
                    newer.before = item.before
            raise
        finally:
            self.in_flight = 0
        metrics.VIEW_WRITES.inc(len(batch))

    def due(self, now: float) -> bool:
        """Whether the pending updates are to be written at loop time `now`."""
        if not self.pending:
            return False
        if len(self.pending) >= self.max_pending:
            return True
        wait = now - self._written_at
        if wait < self.interval_s:
            return False
        if wait >= self.catchup_interval_s or self.behind is None:
            return True
        return not self.behind()

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
                now = loop.time()
                if self.due(now):
                    await self.flush()
                    self._written_at = now
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
