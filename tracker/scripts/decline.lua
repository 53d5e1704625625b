-- decline: the provider declines a referral under its own terms. Removal
-- orders cannot be declined. KEYS: see prelude.
-- ARGV[4] provider, [5] message key, [6] event details JSON.
-- Returns {'ok', version} | {'dup', state} | {'early'} | {'not_found'} |
-- {'forbidden'} | {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if get('provider') ~= ARGV[4] then return {'forbidden'} end
local st = get('state')
if seen(ARGV[5]) or st == 'declined' then return {'dup', st} end
if st == 'received' then return {'early'} end
if get('kind') ~= 'referral' then return {'illegal', st} end
if st ~= 'delivered' and st ~= 'acknowledged' and st ~= 'blocked' then return {'illegal', st} end
close()
redis.call('HSET', N, 'running', 0)
set_state(st, 'declined')
mark(ARGV[5])
return {'ok', emit('declined', ARGV[6])}
