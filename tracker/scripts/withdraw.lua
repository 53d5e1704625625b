-- withdraw: the issuer withdraws an open notice. KEYS: see prelude.
-- ARGV[4] issuer, [5] message key, [6] event details JSON.
-- Returns {'ok', version} | {'dup', state} | {'not_found'} | {'forbidden'}
-- | {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if get('issuer') ~= ARGV[4] then return {'forbidden'} end
local st = get('state')
if seen(ARGV[5]) or st == 'withdrawn' then return {'dup', st} end
if st == 'removed' or st == 'declined' then return {'illegal', st} end
close()
redis.call('HSET', N, 'running', 0)
set_state(st, 'withdrawn')
mark(ARGV[5])
return {'ok', emit('withdrawn', ARGV[6])}
