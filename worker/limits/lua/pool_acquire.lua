-- Take or renew the holder's lease (1), or park it with its message (0). While the pool is paused
-- (a 429), even a holder parks: it is about to start a provider job, which the pause forbids.
-- ARGV[4] holder, ARGV[5] tenant, ARGV[6] order (job age), ARGV[7] queue, ARGV[8] message.
local holder, tenant, order = ARGV[4], ARGV[5], tonumber(ARGV[6])
wake()
local paused = paused_until() > 0
if redis.call('ZSCORE', LEASES, holder) then
  if not paused then
    redis.call('ZADD', LEASES, now + ttl, holder)
    unpark(holder)
    return 1
  end
  redis.call('ZREM', LEASES, holder)
end
if not paused and redis.call('ZCARD', LEASES) < size and redis.call('HLEN', WAITING) == 0 then
  redis.call('ZADD', LEASES, now + ttl, holder)
  return 1
end
redis.call('HSET', WAITING, holder, cjson.encode({queue = ARGV[7], message = ARGV[8], tenant = tenant}))
redis.call('ZADD', P .. ':t:' .. tenant, order, holder)
redis.call('ZADD', TENANTS, 0, tenant)
return 0
