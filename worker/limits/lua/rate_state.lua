-- {calls in the last period, reserved turns, paused until, now} of a rate budget. ARGV[2]: period (ms).
local K = KEYS[1]
return {redis.call('ZCOUNT', K .. ':log', now - tonumber(ARGV[2]), '+inf'), redis.call('ZCOUNT', K .. ':resv', now, '+inf'),
        redis.call('GET', K .. ':paused') or '0', tostring(now)}
