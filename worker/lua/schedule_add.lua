-- Schedule a message: KEYS[1] the queue's schedule, KEYS[2] its items hash.
-- ARGV[1] run key, ARGV[2] delay (ms), ARGV[3] queue, ARGV[4] message, ARGV[5] wake channel.
-- An entry that becomes the earliest is announced, so sleeping movers wake for it.
local t = redis.call('TIME')
local due = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3] .. '\n' .. ARGV[4])
redis.call('ZADD', KEYS[1], due, ARGV[1])
if redis.call('ZRANGE', KEYS[1], 0, 0)[1] == ARGV[1] then redis.call('PUBLISH', ARGV[5], due) end
return due
