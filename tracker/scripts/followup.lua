-- followup: the scheduler fires one planned follow-up under its claim and
-- schedules the next. KEYS: see prelude.
-- ARGV[4] claim token, [5] version planned on, [6] action (none, attempt,
-- redeliver, reminder, escalate, follow_up), [7] next follow-up (ms, 0 for
-- none), [8] event details JSON, [9] the delivery attempt of redeliver or
-- attempt (JSON, may be empty).
-- Returns {'ok', version or 0} | {'stale'} | {'not_found'}.
if redis.call('EXISTS', N) == 0 then
  redis.call('ZREM', DUE, ID)
  redis.call('HDEL', CLM, ID)
  return {'not_found'}
end
if redis.call('HGET', CLM, ID) ~= ARGV[4] or get('v') ~= ARGV[5] then return {'stale'} end
local act, v = ARGV[6], 0
record_attempt(ARGV[9])
if act == 'attempt' then
  redis.call('HINCRBY', N, 'deliveries', 1)
  redis.call('HSET', N, 'last_delivery', NOWS)
elseif act == 'redeliver' then
  local n = redis.call('HINCRBY', N, 'deliveries', 1)
  redis.call('HSET', N, 'last_delivery', NOWS)
  v = emit('redelivered', ARGV[8], {'att', n})
elseif act == 'reminder' then
  local n = redis.call('HINCRBY', N, 'reminders', 1)
  v = emit('reminder', ARGV[8], {'att', n})
elseif act == 'escalate' then
  if get('overdue') ~= '1' then
    redis.call('HSET', N, 'overdue', '1')
    redis.call('HINCRBY', OVD, get('kind') .. ':' .. get('provider'), 1)
  end
  redis.call('HSET', N, 'last_followup', NOWS)
  v = emit('escalated', ARGV[8])
elseif act == 'follow_up' then
  local n = redis.call('HINCRBY', N, 'followups', 1)
  redis.call('HSET', N, 'last_followup', NOWS)
  v = emit('follow_up', ARGV[8], {'att', n})
elseif act ~= 'none' then
  return redis.error_reply('followup: unknown action ' .. act)
end
if ARGV[7] == '0' then
  redis.call('ZREM', DUE, ID)
else
  redis.call('ZADD', DUE, ARGV[7], ID)
end
redis.call('HDEL', CLM, ID)
return {'ok', v}
