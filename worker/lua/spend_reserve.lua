-- A job reserves what it will cost against its tenant's budget, once. KEYS[1] the tenant's budget (hash:
-- limit, in micro-dollars; none: no limit), KEYS[2] the tenant's spend in this period (hash: spent,
-- reserved, refused), KEYS[3] the job, KEYS[4] the tenant's holds (hash: job id -> "<period> <amount>"),
-- KEYS[5] the refusals by tenant (a counter hash, exported by `genq metrics`).
-- ARGV[1] the job id, ARGV[2] the amount (micro-dollars), ARGV[3] the period, ARGV[4] how long the
-- period's spend is kept (s), ARGV[5] the tenant.
-- Checked and added in one step, so concurrent jobs never reserve past the limit together. Returns
-- {'ok'}; {'again', hold} for a job that reserved before (a resent or re-run stage: nothing is added);
-- {'over', spent, reserved, limit} (counted as a refusal, nothing added); or {'missing'}.
local held = redis.call('HGET', KEYS[3], 'spend_hold')
if held then return {'again', held} end
if redis.call('EXISTS', KEYS[3]) == 0 then return {'missing'} end
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '-1')
local spent = tonumber(redis.call('HGET', KEYS[2], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[2], 'reserved') or '0')
local amount = tonumber(ARGV[2])
if limit >= 0 and spent + reserved + amount > limit then
  redis.call('HINCRBY', KEYS[2], 'refused', 1)
  redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  return {'over', tostring(spent), tostring(reserved), tostring(limit)}
end
local hold = ARGV[3] .. ' ' .. ARGV[2]
redis.call('HINCRBY', KEYS[2], 'reserved', amount)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
redis.call('HSET', KEYS[4], ARGV[1], hold)
redis.call('HSET', KEYS[3], 'spend_hold', hold)
return {'ok'}
