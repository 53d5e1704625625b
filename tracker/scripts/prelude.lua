-- Shared prelude, prepended to every transition script at load time.
-- Each paragraph that defines helpers goes only into the scripts that
-- call them (directly or through another helper): defining a function
-- costs every call of a script, and the hot transitions use few of them
-- (see scripts.go).
--
-- Every transition script takes the same KEYS, all in one hash-tag slot:
--   KEYS[1] notice hash   td:{s}:n:<id>
--   KEYS[2] due index     td:{s}:due       (zset: next follow-up, ms)
--   KEYS[3] deadlines     td:{s}:deadline  (zset: running deadlines, ms)
--   KEYS[4] outbox        td:{s}:outbox    (stream of events to relay)
--   KEYS[5] counts        td:{s}:counts    (hash: state -> open count)
--   KEYS[6] overdue       td:{s}:overdue   (hash: kind:provider -> overdue count)
--   KEYS[7] claims        td:{s}:claims    (hash: id -> scheduler claim token)
--   KEYS[8] attempts      td:{s}:a:<id>    (list: the notice's delivery attempts)
--   KEYS[9] timeline      td:{s}:t:<id>    (list: the notice's events, for reads)
--   KEYS[10] body         td:{s}:b:<id>    (string: the notice's JSON)
-- ARGV[1] is always the notice id and ARGV[2] the current time in ms (NOW
-- as a number, NOWS as the text to write: Lua formats a number it turns
-- into text with sprintf, which costs more than many a command),
-- ARGV[3] the same time as RFC 3339 text for the event.
local N, DUE, DL, OUT, CNT, OVD, CLM, ATT, TL, BODY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local ID, NOW, NOWS, NOWTXT = ARGV[1], tonumber(ARGV[2]), ARGV[2], ARGV[3]

local function get(f) return redis.call('HGET', N, f) end

local function num(f) return tonumber(redis.call('HGET', N, f) or '0') or 0 end

-- load reads, in one call, the fields an event carries (1 state,
-- 2 issuer, 3 provider, 4 kind, 5 ref, 6 deadline, 7 running, 8 overdue,
-- 9 delivered_at), then 10 v and 11 lastmsg, then any fields named.
-- Missing fields are false; a notice that does not exist has no state.
-- The transitions of every notice (create, deliver, acknowledge, remove)
-- read with it once and write the hash once: each redis.call has a price
-- of its own, and these run four times per notice.
local function load(...)
  return redis.call('HMGET', N, 'state', 'issuer', 'provider', 'kind', 'ref',
    'deadline', 'running', 'overdue', 'delivered_at', 'v', 'lastmsg', ...)
end

-- count moves one notice between the per-state counters.
local function count(old, new)
  redis.call('HINCRBY', CNT, old, '-1')
  redis.call('HINCRBY', CNT, new, '1')
end

-- set_state moves the notice to a new state and keeps the per-state
-- counters in step.
local function set_state(old, new)
  redis.call('HSET', N, 'state', new)
  count(old, new)
end

-- clear_overdue drops the overdue flag and its per-provider counter.
local function clear_overdue()
  if get('overdue') == '1' then
    redis.call('HSET', N, 'overdue', '0')
    redis.call('HINCRBY', OVD, get('kind') .. ':' .. get('provider'), '-1')
  end
end

-- unindex takes a notice out of the due and deadline indexes and drops
-- its scheduler claim.
local function unindex()
  redis.call('ZREM', DUE, ID)
  redis.call('ZREM', DL, ID)
  redis.call('HDEL', CLM, ID)
end

-- close takes a notice out of every index once it is terminal.
local function close()
  unindex()
  clear_overdue()
end

-- record appends the event of version v to the outbox in the same atomic
-- step as the change it records. h holds the event's fields as load
-- returns them, as they are after the change. extra is a list of
-- field/value pairs; x is a JSON object of event details prepared by the
-- caller.
local function record(v, typ, x, extra, h)
  -- The outbox entry is one field, the event's values in a fixed order
  -- separated by the unit separator (\31), which none of them can hold:
  -- ids and enums are plain words, the reference is validated to have no
  -- control characters and the details are JSON, which escapes them. One
  -- field is much cheaper to write and to read back than a field each.
  local ex = {}
  if extra then for i = 1, #extra, 2 do ex[extra[i]] = extra[i + 1] end end
  local e = {ID, v, typ, NOWTXT, h[1], h[2], h[3], h[4], h[5],
    h[6] or '', h[7] or '0', h[8] or '0', h[9] or '', ex['it'] or '', ex['ms'] or '', ex['att'] or '', x or ''}
  redis.call('XADD', OUT, '*', 'e', table.concat(e, '\31'))
  -- The notice's own timeline keeps the same entry without what every
  -- event of the notice repeats (id, issuer, provider, kind, reference:
  -- in the hash) and without the received event's notice (in the body
  -- key): packed the same way, it is smaller and cheaper to build than
  -- JSON.
  e[1], e[6], e[7], e[8], e[9] = '', '', '', '', ''
  if typ == 'received' or typ == 'replayed' then e[17] = '' end
  -- A notice followed up for months keeps its latest 200 events here; the
  -- events stream keeps everything.
  if redis.call('RPUSH', TL, table.concat(e, '\31')) > 200 then
    redis.call('LTRIM', TL, -200, -1)
  end
  return v
end

-- emit bumps the version and records the event, reading what it carries
-- from the hash as the script left it.
local function emit(typ, x, extra)
  local v = redis.call('HINCRBY', N, 'v', 1)
  return record(v, typ, x, extra, load())
end

-- seen returns true when this message (stream sequence of the feedback or
-- intake message) was already applied: redelivery is a no-op. last is the
-- notice's lastmsg when the caller has read it already (see load).
local function seen(msgkey, last)
  if last == nil then last = get('lastmsg') end
  return msgkey ~= '' and last == msgkey
end

local function mark(msgkey)
  if msgkey ~= '' then redis.call('HSET', N, 'lastmsg', msgkey) end
end

-- record_attempt appends a delivery attempt (JSON) to the notice's attempt
-- list, keeping the latest 50.
local function record_attempt(rec)
  if rec and rec ~= '' and redis.call('RPUSH', ATT, rec) > 50 then
    redis.call('LTRIM', ATT, -50, -1)
  end
end
