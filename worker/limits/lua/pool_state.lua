-- {live leases, parked callers, paused until} of a pool.
return {redis.call('ZCOUNT', LEASES, now, '+inf'), redis.call('HLEN', WAITING), tostring(paused_until())}
