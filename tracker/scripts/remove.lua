-- remove: the provider removed the content or disabled access (Annex II).
-- KEYS: see prelude.
-- ARGV[4] provider, [5] message key, [6] time of action (ms),
-- [7] event details JSON.
-- Returns {'ok', version, in_time (0|1), ms from delivery to action, kind}
-- | {'dup', state} | {'early'} | {'not_found'} | {'forbidden'} |
-- {'illegal', state}.
local h = load()
local st = h[1]
if not st then return {'not_found'} end
if h[3] ~= ARGV[4] then return {'forbidden'} end
if seen(ARGV[5], h[11]) or st == 'removed' then return {'dup', st} end
if st == 'received' then return {'early'} end
if st ~= 'delivered' and st ~= 'acknowledged' and st ~= 'blocked' then return {'illegal', st} end
local action = tonumber(ARGV[6])
-- A blocked notice has no running clock, so acting on it is never late.
local in_time = '1'
if h[7] == '1' and action > (tonumber(h[6]) or 0) then in_time = '0' end
local took = action - (tonumber(h[9]) or 0)
if took < 0 then took = 0 end
-- Out of every index, as close() does, with the overdue flag cleared in
-- the one write of the hash below.
unindex()
local vn = (tonumber(h[10]) or 0) + 1 -- as HINCRBY would
local v = tostring(vn)
local f = {'state', 'removed', 'v', v, 'running', '0', 'action_at', ARGV[6], 'in_time', in_time}
if h[8] == '1' then
  f[#f + 1], f[#f + 2] = 'overdue', '0'
  redis.call('HINCRBY', OVD, h[4] .. ':' .. h[3], '-1')
  h[8] = '0'
end
if ARGV[5] ~= '' then f[#f + 1], f[#f + 2] = 'lastmsg', ARGV[5] end
redis.call('HSET', N, unpack(f))
count(st, 'removed')
h[1], h[7] = 'removed', '0'
record(v, 'removed', ARGV[7], {'it', in_time, 'ms', took}, h)
return {'ok', vn, tonumber(in_time), took, h[4]}
