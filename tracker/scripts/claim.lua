-- claim: take up to LIMIT due notices of one shard under a lease. Moving
-- their score to the lease's end in the same step means no other scheduler
-- sees them until the lease runs out, and a crashed scheduler's work comes
-- back by itself when it does. The claim token lets only the latest
-- claimant fire (followup.lua, fail.lua check it).
-- KEYS[1] due index, KEYS[2] claims hash (same slot).
-- ARGV[1] now (ms), [2] lease end (ms), [3] limit, [4] claim token.
-- Returns the claimed ids.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HSET', KEYS[2], id, ARGV[4])
end
return ids
