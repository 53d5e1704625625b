-- acknowledge: the provider confirms receipt. KEYS: see prelude.
-- ARGV[4] provider, [5] message key, [6] event details JSON.
-- Returns {'ok', version} | {'dup', state} | {'early'} (not yet recorded
-- as delivered: retry shortly) | {'not_found'} | {'forbidden'} |
-- {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if get('provider') ~= ARGV[4] then return {'forbidden'} end
local st = get('state')
if seen(ARGV[5]) then return {'dup', st} end
if st == 'received' then return {'early'} end
if st == 'acknowledged' or st == 'blocked' then return {'dup', st} end
if st ~= 'delivered' then return {'illegal', st} end
set_state(st, 'acknowledged')
mark(ARGV[5])
return {'ok', emit('acknowledged', ARGV[6])}
