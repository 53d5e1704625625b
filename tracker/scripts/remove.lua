-- remove: the provider removed the content or disabled access (Annex II).
-- KEYS: see prelude.
-- ARGV[4] provider, [5] message key, [6] time of action (ms),
-- [7] event details JSON.
-- Returns {'ok', version, in_time (0|1), ms from delivery to action, kind}
-- | {'dup', state} | {'early'} | {'not_found'} | {'forbidden'} |
-- {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
if get('provider') ~= ARGV[4] then return {'forbidden'} end
local st = get('state')
if seen(ARGV[5]) or st == 'removed' then return {'dup', st} end
if st == 'received' then return {'early'} end
if st ~= 'delivered' and st ~= 'acknowledged' and st ~= 'blocked' then return {'illegal', st} end
local action = tonumber(ARGV[6])
-- A blocked notice has no running clock, so acting on it is never late.
local in_time = 1
if get('running') == '1' and action > num('deadline') then in_time = 0 end
local took = action - num('delivered_at')
if took < 0 then took = 0 end
close()
redis.call('HSET', N, 'running', 0, 'action_at', action, 'in_time', in_time)
set_state(st, 'removed')
mark(ARGV[5])
local v = emit('removed', ARGV[7], {'it', in_time, 'ms', took})
return {'ok', v, in_time, took, get('kind')}
