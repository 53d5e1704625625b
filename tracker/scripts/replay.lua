-- replay: an operator sends a failed notice through delivery again.
-- KEYS: see prelude. ARGV[4] next follow-up (ms), [5] event details JSON.
-- Returns {'ok', version} | {'not_found'} | {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
local st = get('state')
if st ~= 'failed' then return {'illegal', st} end
redis.call('HSET', N, 'deliveries', 0, 'last_delivery', 0, 'created', NOWS)
redis.call('ZADD', DUE, ARGV[4], ID)
set_state(st, 'received')
return {'ok', emit('replayed', ARGV[5])}
