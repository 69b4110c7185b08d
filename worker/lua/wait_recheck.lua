-- Ids still running after a check: next check ARGV[1] ms from now, for those still parked (XX: a
-- webhook may have woken one meanwhile). KEYS[1] the due set, KEYS[2] entries; ARGV[2..] ids.
-- Returns the ids whose deadline has passed (the sweeper ends their wait as timed out).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local late = {}
for i = 2, #ARGV do
  local entry = redis.call('HGET', KEYS[2], ARGV[i])
  if entry then
    if tonumber(cjson.decode(entry)['deadline']) <= now then
      late[#late + 1] = ARGV[i]
    else
      redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
    end
  end
end
return late
