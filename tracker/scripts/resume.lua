-- resume: a blocked notice's clock starts again with a full window, either
-- because the provider's force majeure is over (resumed) or because the
-- issuer answered an insufficient_info or manifest_error block (clarified).
-- The notice returns to acknowledged: the provider evidently has it.
-- KEYS: see prelude.
-- ARGV[4] 'provider' or 'issuer', [5] that principal's id, [6] message key,
-- [7] event details JSON.
-- Returns {'ok', version, deadline} | {'dup', state} | {'not_found'} |
-- {'forbidden'} | {'illegal', state, ground}.
if redis.call('EXISTS', N) == 0 then return {'not_found'} end
local who = ARGV[4]
if get(who) ~= ARGV[5] then return {'forbidden'} end
local st = get('state')
if seen(ARGV[6]) then return {'dup', st} end
if st ~= 'blocked' then return {'illegal', st, ''} end
local ground = get('ground')
if who == 'provider' and ground ~= 'force_majeure' then return {'illegal', st, ground} end
if who == 'issuer' and ground == 'force_majeure' then return {'illegal', st, ground} end
local deadline = NOW + num('window')
redis.call('HSET', N, 'clock', NOWS, 'deadline', deadline, 'running', 1, 'reminders', 0,
  'ground', '', 'last_followup', 0)
redis.call('ZADD', DL, deadline, ID)
redis.call('ZADD', DUE, NOWS, ID)
set_state(st, 'acknowledged')
mark(ARGV[6])
local typ = 'resumed'
if who == 'issuer' then typ = 'clarified' end
return {'ok', emit(typ, ARGV[7]), deadline}
