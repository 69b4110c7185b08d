-- Keep (or take back) ARGV[4]'s lease for the ttl, regardless of the pool's size: its provider job runs.
redis.call('ZADD', LEASES, now + ttl, ARGV[4])
return 1
