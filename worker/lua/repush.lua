-- The reconciler puts a job's lost step runs back. KEYS[1] the job, KEYS[2] the running index.
-- ARGV[1] the newest time the job may have moved at (ms) to be repaired, then pairs: queue, message.
-- Nothing is pushed when the job moved since the reconciler looked, or is no longer running (it leaves
-- the index then). Returns how many messages were pushed.
local status = redis.call('HGET', KEYS[1], 'status')
local job = string.match(KEYS[1], '[^:]+$')
if status ~= 'running' then
  redis.call('ZREM', KEYS[2], job)
  return 0
end
local moved = redis.call('ZSCORE', KEYS[2], job)
if moved and tonumber(moved) > tonumber(ARGV[1]) then return 0 end
for i = 2, #ARGV, 2 do redis.call('RPUSH', ARGV[i], ARGV[i + 1]) end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000), job)
return (#ARGV - 1) / 2
