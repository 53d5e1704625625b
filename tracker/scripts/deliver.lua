-- deliver: the provider's contact point received the notice (the JetStream
-- ack of the deliver publish, or a 2xx from the webhook); the clock starts.
-- KEYS: see prelude.
-- ARGV[4] window (ms), [5] next follow-up (ms), [6] event details JSON,
-- [7] the delivery attempt (JSON, may be empty).
-- Returns {'ok', version, deadline} | {'dup', state} | {'not_found'} |
-- {'illegal', state}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
local st = get('state')
if st ~= 'received' then
  if st == 'failed' or st == 'removed' or st == 'declined' or st == 'withdrawn' then
    return {'illegal', st}
  end
  return {'dup', st}
end
local window = tonumber(ARGV[4])
local deadline = NOW + window
redis.call('HSET', N, 'delivered_at', NOW, 'clock', NOW, 'deadline', deadline, 'running', 1,
  'window', window, 'last_delivery', NOW, 'reminders', 0)
redis.call('HINCRBY', N, 'deliveries', 1)
set_state(st, 'delivered')
redis.call('ZADD', DL, deadline, ID)
redis.call('ZADD', DUE, ARGV[5], ID)
redis.call('HDEL', CLM, ID)
record_attempt(ARGV[7])
return {'ok', emit('delivered', ARGV[6]), deadline}
