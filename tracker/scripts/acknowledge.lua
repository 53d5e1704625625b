-- acknowledge: the provider confirms receipt. KEYS: see prelude.
-- ARGV[4] provider, [5] message key, [6] event details JSON.
-- Returns {'ok', version} | {'dup', state} | {'early'} (not yet recorded
-- as delivered: retry shortly) | {'not_found'} | {'forbidden'} |
-- {'illegal', state}.
local h = load()
local st = h[1]
if not st then return {'not_found'} end
if h[3] ~= ARGV[4] then return {'forbidden'} end
if seen(ARGV[5], h[11]) then return {'dup', st} end
if st == 'received' then return {'early'} end
-- Receipt is already confirmed by any later answer, and a notice that is
-- closed has nothing left to acknowledge: an acknowledgement that arrives
-- after them (feedback workers take a provider's messages concurrently, so
-- its "removed" can overtake its "acknowledged") changes nothing.
if st == 'acknowledged' or st == 'blocked' or st == 'removed' or st == 'declined' or st == 'withdrawn' then
  return {'dup', st}
end
if st ~= 'delivered' then return {'illegal', st} end
local vn = (tonumber(h[10]) or 0) + 1 -- as HINCRBY would
local v = tostring(vn)
local f = {'state', 'acknowledged', 'v', v}
if ARGV[5] ~= '' then f[#f + 1], f[#f + 2] = 'lastmsg', ARGV[5] end
redis.call('HSET', N, unpack(f))
count(st, 'acknowledged')
h[1] = 'acknowledged'
record(v, 'acknowledged', ARGV[6], nil, h)
return {'ok', vn}
