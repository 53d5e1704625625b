-- block: the provider cannot act (Annex III); the clock stops until the
-- grounds cease (resume) or the issuer clarifies. KEYS: see prelude.
-- ARGV[4] provider, [5] message key, [6] ground, [7] event details JSON.
-- Returns {'ok', version} | {'dup', state} | {'early'} | {'not_found'} |
-- {'forbidden'} | {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if get('provider') ~= ARGV[4] then return {'forbidden'} end
local st = get('state')
if seen(ARGV[5]) then return {'dup', st} end
if st == 'received' then return {'early'} end
if st == 'blocked' and get('ground') == ARGV[6] then return {'dup', st} end
if st ~= 'delivered' and st ~= 'acknowledged' then return {'illegal', st} end
clear_overdue()
redis.call('ZREM', DL, ID)
redis.call('HSET', N, 'running', 0, 'ground', ARGV[6], 'blocked_at', NOWS, 'last_followup', 0)
-- The scheduler plans the blocked follow-ups at once.
redis.call('ZADD', DUE, NOWS, ID)
set_state(st, 'blocked')
mark(ARGV[5])
return {'ok', emit('blocked', ARGV[7])}
