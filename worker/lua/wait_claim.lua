-- Take up to ARGV[1] parked ids whose check is due, oldest-due first, from the due set KEYS[1], and
-- push their next check ARGV[2] ms ahead: a sweeper that dies with them in hand leaves them to be
-- checked again then. Returns the ids.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id) end
return ids
