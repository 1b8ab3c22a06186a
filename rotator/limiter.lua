-- Sliding-window limiter: every window is a sorted set of reservation tokens
-- scored by time in integer microseconds (exact in a Lua double until 2255).
-- A window holds at most `limit` members scored within its last `span` us.
--
-- KEYS[i]   the sorted set of window i; with ARGV[4] "1" (reserve, used) the last key is
--           the epoch key instead, written when the windows were (re)built: without it
--           Redis has lost them (restart, flush, failover) and the call answers {-1}
--           without touching anything, so the caller rebuilds them first
-- ARGV[1]   op: "reserve" | "release" | "used" | "frees"
-- ARGV[2]   now in microseconds, or "" to use the Redis clock (one clock for all nodes)
-- ARGV[3]   spans of the windows in microseconds, comma-separated, one per key
-- then, by op (numbers travel as comma-separated strings: far fewer arguments
-- to pack than one per number, which dominated the round trip):
--   reserve: ARGV[4] guard ("1": check the epoch key), ARGV[5] token prefix,
--            ARGV[6] first token number,
--            ARGV[7] slots "key,limit,key,limit,..." (a slot is one window check),
--            ARGV[8] requests "w,slot,...,slot,w,slot,..." (w = slots in the request),
--            ARGV[9] horizon us (0: now or never), ARGV[10] jitter us per request
--            ("" = none), ARGV[11] per request how long after now (us) it may be placed
--            at the earliest ("" = now)
--            -> per request: allowed (0/1), then the reserved time in us when allowed or
--            the wait in us when refused, then the refusing slot position (0-based, -1)
--            token of request n (1-based) = prefix .. (first + n - 1)
--            A request is placed at the earliest time t >= now (plus its jitter) at which
--            every one of its windows counts fewer than `limit` members scored after
--            t - span, future members included: then no interval of `span` around t
--            can exceed the limit. Allowed when t <= now + horizon; the member is
--            scored t, so a send placed in the future holds its place from then on.
--            Refused: the wait is t - now (come back at t).
--   release: ARGV[4] token               -> {}
--   move:    ARGV[4] guard, ARGV[5] token, ARGV[6] limits "limit,limit,..." (one per key)
--            -> {1, now us} when every window, without the token, counts fewer than its
--            limit after now - span: the token is then scored now (a send that comes late
--            takes its place at the moment it really goes); else {0, wait us}, untouched
--   used:    ARGV[4] guard               -> per key: live count
--   frees:   ARGV[4] limit (KEYS[1])     -> us when it has room again, or -1
--   restore: ARGV[4] members per key (comma-separated),
--            ARGV[5] "score member score member ...", key after key (members hold no
--            spaces)                     -> members written; each key expires after its span
local op = ARGV[1]
local now
if ARGV[2] == "" then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end

local function numbers(s)
  local out = {}
  for n in string.gmatch(s, "-?%d+") do out[#out + 1] = tonumber(n) end
  return out
end

local nkeys = #KEYS
local span = numbers(ARGV[3])
if (op == "reserve" or op == "used" or op == "move") and ARGV[4] == "1" then
  if redis.call("EXISTS", KEYS[nkeys]) == 0 then return {-1} end
  nkeys = nkeys - 1
end

-- A window must outlive its latest member by its span, and members may be placed ahead:
-- its expiry only ever moves later (never cut short by a write of an earlier member).
local function keep_until(i, latest)
  local ms = math.ceil((latest - now + span[i]) / 1000)
  if redis.call("PTTL", KEYS[i]) < ms then redis.call("PEXPIRE", KEYS[i], ms) end
end

local live = {}     -- members in window i now, counting this call's pending adds
local pending = {}  -- "score, member" pairs reserved in this call, not yet written
local latest = {}   -- the latest score reserved in window i by this call

local function load(i)
  local c = live[i]
  if c == nil then
    redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", now - span[i])
    c = redis.call("ZCARD", KEYS[i])
    live[i] = c
    pending[i] = {}
  end
  return c
end

-- Writes window i's pending members: one ZADD per key per call, chunked below
-- Lua's C stack limit for unpack.
local function flush(i)
  local p = pending[i]
  if p == nil or #p == 0 then return end
  for from = 1, #p, 4000 do
    redis.call("ZADD", KEYS[i], unpack(p, from, math.min(from + 3999, #p)))
  end
  pending[i] = {}
end

-- The earliest time (us) at which window i counts fewer than `limit` members scored
-- after it minus the span: the member at rank (count - limit) must have left. Pending
-- members are written first so ranks are exact.
local function room_at(i, limit)
  if live[i] < limit then return now end
  flush(i)
  local rank = live[i] - limit
  local e = redis.call("ZRANGE", KEYS[i], rank, rank, "WITHSCORES")
  return tonumber(e[2]) + span[i]
end

-- Microseconds until window i has room (the refusal's wait when nothing is scheduled).
local function wait_for(i, limit)
  if limit <= 0 then return span[i] end
  return room_at(i, limit) - now
end

if op == "reserve" then
  local prefix, first = ARGV[5], tonumber(ARGV[6])
  local slots = numbers(ARGV[7])
  local req = numbers(ARGV[8])
  local horizon = tonumber(ARGV[9]) or 0
  local jitter = numbers(ARGV[10] or "")
  local floors = numbers(ARGV[11] or "")
  local out = {}
  local pos, n = 1, 0
  while pos <= #req do
    local w = req[pos]
    local base = pos + 1
    local at, worst, worst_j, closed = now + (floors[n + 1] or 0), -1, -1, false
    for j = base, base + w - 1 do
      local s = 2 * req[j] - 1
      local i, limit = slots[s], slots[s + 1]
      load(i)
      local t
      if limit <= 0 then
        closed = true
        t = now + span[i]
      else
        t = room_at(i, limit)
      end
      if t > at then at = t end
      if t > now and t - now > worst then worst, worst_j = t - now, j - base end
    end
    at = at + (jitter[n + 1] or 0)
    if not closed and at <= now + horizon then
      local token = prefix .. string.format("%d", first + n)
      for j = base, base + w - 1 do
        local i = slots[2 * req[j] - 1]
        local p = pending[i]
        p[#p + 1] = at
        p[#p + 1] = token
        live[i] = live[i] + 1
        if latest[i] == nil or at > latest[i] then latest[i] = at end
      end
      out[#out + 1] = 1; out[#out + 1] = at; out[#out + 1] = -1
    else
      -- The wait is until the moment itself: asked again then, the request is placed now.
      out[#out + 1] = 0; out[#out + 1] = math.max(at - now, 1)
      out[#out + 1] = worst_j
    end
    pos = base + w
    n = n + 1
  end
  for i = 1, nkeys do
    flush(i)
    if latest[i] then keep_until(i, latest[i]) end
  end
  return out
elseif op == "release" then
  local token = ARGV[4]
  for i = 1, nkeys do redis.call("ZREM", KEYS[i], token) end
  return {}
elseif op == "move" then
  local token = ARGV[5]
  local limits = numbers(ARGV[6])
  local worst = 0
  for i = 1, nkeys do
    local c = load(i)
    local own = redis.call("ZRANK", KEYS[i], token)
    if own then c = c - 1 end
    if limits[i] <= 0 then
      worst = math.max(worst, span[i])
    elseif c >= limits[i] then
      -- the member that must leave, counted without the token
      local rank = c - limits[i]
      if own and own <= rank then rank = rank + 1 end
      local e = redis.call("ZRANGE", KEYS[i], rank, rank, "WITHSCORES")
      worst = math.max(worst, tonumber(e[2]) + span[i] - now)
    end
  end
  if worst > 0 then return {0, worst} end
  for i = 1, nkeys do
    redis.call("ZADD", KEYS[i], now, token)
    keep_until(i, now)
  end
  return {1, now}
elseif op == "used" then
  local out = {}
  for i = 1, nkeys do out[i] = load(i) end
  return out
elseif op == "frees" then
  local limit = tonumber(ARGV[4])
  if limit > 0 and load(1) < limit then return -1 end
  if limit <= 0 then return now + span[1] end
  load(1)
  return now + wait_for(1, limit)
elseif op == "restore" then
  local tokens, n = {}, 0
  for x in string.gmatch(ARGV[5], "%S+") do n = n + 1; tokens[n] = x end
  local counts = numbers(ARGV[4])
  local at = 1
  for i = 1, nkeys do
    local last = at + 2 * counts[i] - 1
    for from = at, last, 7000 do  -- below Lua's C stack limit for unpack
      redis.call("ZADD", KEYS[i], unpack(tokens, from, math.min(from + 6999, last)))
    end
    local top = now
    for j = at, last, 2 do
      local score = tonumber(tokens[j])
      if score > top then top = score end
    end
    keep_until(i, top)
    at = last + 1
  end
  return (at - 1) / 2
end
return redis.error_reply("limiter.lua: unknown op " .. tostring(op))
