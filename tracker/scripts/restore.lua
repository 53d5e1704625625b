-- restore: write a notice as its events on the events stream say it is,
-- after Redis lost it or some of its transitions (Rebuild in restore.go
-- folds the events). No event is recorded: the stream has them already.
-- KEYS: see prelude, and KEYS[11..12] the listing indexes
-- td:{s}:by:issuer:<issuer> and td:{s}:by:provider:<provider>.
-- ARGV[4] the version the tracker holds now ('0': none), [5] next
-- follow-up (ms, '' for none), [6] body (compressed), [7] creation time
-- for the listing indexes (ms), [8] number of field/value pairs k,
-- [9 .. 8+2k] the pairs (state, v, kind, issuer, provider, running,
-- deadline and overdue among them), then the timeline entries, oldest
-- first.
-- Returns {'ok', version} | {'stale', version now} (the notice moved on:
-- compare again).
local cur = redis.call('HMGET', N, 'v', 'state', 'overdue', 'kind', 'provider')
if (cur[1] or '0') ~= ARGV[4] then return {'stale', cur[1] or '0'} end
local k = tonumber(ARGV[8])
local f = {}
for i = 9, 8 + 2 * k, 2 do f[ARGV[i]] = ARGV[i + 1] end
if cur[2] then
  redis.call('HINCRBY', CNT, cur[2], '-1')
  if cur[3] == '1' then redis.call('HINCRBY', OVD, cur[4] .. ':' .. cur[5], '-1') end
end
redis.call('DEL', N, TL)
redis.call('HSET', N, unpack(ARGV, 9, 8 + 2 * k))
redis.call('HINCRBY', CNT, f['state'], '1')
if f['overdue'] == '1' then redis.call('HINCRBY', OVD, f['kind'] .. ':' .. f['provider'], '1') end
if f['running'] == '1' then
  redis.call('ZADD', DL, f['deadline'], ID)
else
  redis.call('ZREM', DL, ID)
end
if ARGV[5] ~= '' then
  redis.call('ZADD', DUE, ARGV[5], ID)
else
  redis.call('ZREM', DUE, ID)
end
redis.call('HDEL', CLM, ID)
redis.call('SET', BODY, ARGV[6])
for i = 11, 12 do redis.call('ZADD', KEYS[i], ARGV[7], ID) end
if #ARGV > 8 + 2 * k then redis.call('RPUSH', TL, unpack(ARGV, 9 + 2 * k)) end
return {'ok', tonumber(f['v'])}
