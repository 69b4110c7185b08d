-- Take or keep a lease: KEYS[1] the lease, ARGV[1] the holder, ARGV[2] its time to live (ms).
-- Returns 1 when ARGV[1] holds it now, 0 when another holder does.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
