-- deliver: the provider's contact point received the notice (the JetStream
-- ack of the deliver publish, or a 2xx from the webhook); the clock starts.
-- KEYS: see prelude.
-- ARGV[4] window (ms), [5] next follow-up (ms), [6] event details JSON,
-- [7] the delivery attempt (JSON, may be empty).
-- Returns {'ok', version, deadline} | {'dup', state} | {'not_found'} |
-- {'illegal', state}.
local h = load('deliveries')
local st = h[1]
if not st then return {'not_found'} end
if st ~= 'received' then
  if st == 'failed' or st == 'removed' or st == 'declined' or st == 'withdrawn' then
    return {'illegal', st}
  end
  return {'dup', st}
end
local window = tonumber(ARGV[4])
local dn = NOW + window
local deadline = tostring(dn)
local vn = (tonumber(h[10]) or 0) + 1 -- as HINCRBY would
local v = tostring(vn)
redis.call('HSET', N, 'state', 'delivered', 'v', v, 'delivered_at', NOWS, 'clock', NOWS,
  'deadline', deadline, 'running', '1', 'window', ARGV[4], 'last_delivery', NOWS, 'reminders', '0',
  'deliveries', tostring((tonumber(h[12]) or 0) + 1))
count(st, 'delivered')
redis.call('ZADD', DL, deadline, ID)
redis.call('ZADD', DUE, ARGV[5], ID)
redis.call('HDEL', CLM, ID)
record_attempt(ARGV[7])
h[1], h[6], h[7], h[9] = 'delivered', deadline, '1', NOWS
record(v, 'delivered', ARGV[6], nil, h)
return {'ok', vn, dn}
