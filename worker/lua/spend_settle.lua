-- A job's reservation is settled: its cost is spent and the rest returned, once. KEYS[1] the job (may be
-- gone), KEYS[2] the tenant's spend in the period of the hold, KEYS[3] the tenant's holds. ARGV[1] the job
-- id, ARGV[2] the cost (micro-dollars, at most the hold), ARGV[3] how long the period's spend is kept (s).
-- Returns 'settled', or 'none' when the job holds nothing (it never reserved, or settled before: a resent
-- or re-run stage never charges twice).
local held = redis.call('HGET', KEYS[3], ARGV[1])
if not held then return 'none' end
local amount = tonumber(string.match(held, ' (%d+)$'))
local cost = math.min(tonumber(ARGV[2]), amount)
redis.call('HINCRBY', KEYS[2], 'reserved', -amount)
redis.call('HINCRBY', KEYS[2], 'spent', cost)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'spend_cost', cost) end
return 'settled'
