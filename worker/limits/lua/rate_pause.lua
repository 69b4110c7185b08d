-- Pause a rate budget for ARGV[2] ms (a 429): no turn is given before then.
local K, ms = KEYS[1], tonumber(ARGV[2])
local untl = now + ms
local TAT, PAUSE = K .. ':tat', K .. ':paused'
if tonumber(redis.call('GET', PAUSE) or '0') < untl then redis.call('SET', PAUSE, tostring(untl), 'PX', math.ceil(ms)) end
if tonumber(redis.call('GET', TAT) or '0') < untl then redis.call('SET', TAT, tostring(untl), 'PX', math.ceil(ms) + 60000) end
return 1
