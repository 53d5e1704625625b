-- fail: delivery attempts are exhausted, or the provider's endpoint refused
-- the notice for good; the notice is parked as failed, open and
-- replayable. The scheduler fires it under its claim; a permanent delivery
-- failure fires it without one.
-- KEYS: see prelude.
-- ARGV[4] claim token ('' for none), [5] version planned on ('' for any),
-- [6] event details JSON, [7] the failed attempt (JSON, may be empty).
-- Returns {'ok', version} | {'stale'} | {'not_found'} | {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if ARGV[4] ~= '' and (redis.call('HGET', CLM, ID) ~= ARGV[4] or get('v') ~= ARGV[5]) then return {'stale'} end
local st = get('state')
if st ~= 'received' then return {'illegal', st} end
redis.call('ZREM', DUE, ID)
redis.call('HDEL', CLM, ID)
record_attempt(ARGV[7])
set_state(st, 'failed')
return {'ok', emit('failed', ARGV[6])}
