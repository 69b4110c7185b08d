-- Prepended to every script: ARGV[1] is the time in ms, or -1 for the Redis server's clock.
local now = tonumber(ARGV[1])
if now < 0 then local t = redis.call('TIME'); now = t[1] * 1000 + t[2] / 1000 end
