-- Pause the pool for ARGV[4] ms (a 429): nobody is granted a slot before then.
local untl = now + tonumber(ARGV[4])
if tonumber(redis.call('GET', PAUSE) or '0') < untl then
  redis.call('SET', PAUSE, tostring(untl), 'PX', math.ceil(tonumber(ARGV[4])))
end
return 1
