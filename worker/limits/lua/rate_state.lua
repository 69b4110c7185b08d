-- {tat, reserved turns, paused until, now} of a rate budget.
local K = KEYS[1]
return {redis.call('GET', K .. ':tat') or '0', redis.call('ZCOUNT', K .. ':resv', now, '+inf'),
        redis.call('GET', K .. ':paused') or '0', tostring(now)}
