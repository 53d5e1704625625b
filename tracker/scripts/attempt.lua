-- attempt: a delivery attempt of a notice not yet delivered failed and
-- will be retried. Recorded without a claim: the attempt may have been
-- made by the intake worker or asynchronously for the scheduler.
-- KEYS: see prelude.
-- ARGV[4] the attempt (JSON), [5] next follow-up (ms), [6] earliest next
-- attempt the provider asked for (ms, 0 for none).
-- Returns {'ok', attempts} | {'not_found'} | {'dup', state} (delivered
-- meanwhile by another attempt: only the record is kept).
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
record_attempt(ARGV[4])
local st = get('state')
if st ~= 'received' then return {'dup', st} end
local n = redis.call('HINCRBY', N, 'deliveries', 1)
redis.call('HSET', N, 'last_delivery', NOWS, 'retry_nb', ARGV[6])
redis.call('ZADD', DUE, ARGV[5], ID)
redis.call('HDEL', CLM, ID)
return {'ok', n}
