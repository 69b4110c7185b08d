-- Give back ARGV[4]'s lease or parked place; wake parked callers into the freed slots.
redis.call('ZREM', LEASES, ARGV[4])
unpark(ARGV[4])
return wake()
