-- create: record a new notice as received, or report a duplicate or a
-- conflict. KEYS: see prelude, and KEYS[11..12] the listing indexes
-- td:{s}:by:issuer:<issuer> and td:{s}:by:provider:<provider> (zsets scored
-- by creation time, ms).
-- ARGV[4] fingerprint, [5] kind, [6] issuer, [7] provider, [8] reference,
-- [9] first follow-up (ms), [10] notice JSON, [11] event details JSON.
-- Returns {'ok', version} | {'dup', state} | {'conflict', state}.
local fp = ARGV[4]
local h = redis.call('HMGET', N, 'state', 'fp')
if h[1] then
  if h[2] == fp then return {'dup', h[1]} end
  redis.call('HINCRBY', N, 'conflicts', 1)
  return {'conflict', h[1]}
end
-- The body lives in its own key so that the hash keeps only short fields
-- (Redis stores such hashes compactly).
redis.call('HSET', N, 'v', '1', 'state', 'received', 'fp', fp, 'kind', ARGV[5],
  'issuer', ARGV[6], 'provider', ARGV[7], 'ref', ARGV[8], 'created', NOWS)
redis.call('SET', BODY, ARGV[10])
redis.call('HINCRBY', CNT, 'received', '1')
redis.call('ZADD', DUE, ARGV[9], ID)
for i = 11, 12 do redis.call('ZADD', KEYS[i], NOWS, ID) end
record('1', 'received', ARGV[11], nil, {'received', ARGV[6], ARGV[7], ARGV[5], ARGV[8]})
-- Numbers in the reply cost nothing to format (integer replies).
return {'ok', 1}
