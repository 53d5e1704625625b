-- fail: delivery attempts are exhausted; the notice is parked as failed,
-- open and replayable. Fired by the scheduler under its claim.
-- KEYS: see prelude.
-- ARGV[4] claim token, [5] version the scheduler planned on,
-- [6] event details JSON.
-- Returns {'ok', version} | {'stale'} | {'not_found'} | {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if redis.call('HGET', CLM, ID) ~= ARGV[4] or get('v') ~= ARGV[5] then return {'stale'} end
local st = get('state')
if st ~= 'received' then return {'illegal', st} end
redis.call('ZREM', DUE, ID)
redis.call('HDEL', CLM, ID)
set_state(st, 'failed')
return {'ok', emit('failed', ARGV[6])}
