-- A stage run is done: record it and move the job on, in one step. KEYS[1] the job, KEYS[2] the running
-- index, KEYS[3] the jobs-by-outcome counters.
-- ARGV[1] the stage's field, ARGV[2] its state (JSON, status done), ARGV[3] now (ISO), ARGV[4] the
-- job's time to live once it ends (s), ARGV[5] '1' if the job ends with this step, ARGV[6] its outputs
-- (JSON) then, ARGV[7] how many fields the join waits for (J), then J fields (each must hold a done
-- state), then how many messages follow (P), then P pairs: queue, message.
-- Returns 'again' when the stage had advanced before (a copy of its message: nothing is pushed twice),
-- 'joined' while other branches of the join are not done, 'ended' when the job succeeded, 'advanced'
-- when the next messages were pushed, the status of a job that is no longer running (the state is
-- recorded, nothing pushed), or false when the job has no record.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local before = redis.call('HGET', KEYS[1], ARGV[1])
if before and cjson.decode(before)['status'] == 'done' then return 'again' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'updated_at', ARGV[3])
if status ~= 'running' then return status end
local job = string.match(KEYS[1], '[^:]+$')
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local joins = tonumber(ARGV[7])
for i = 8, 7 + joins do
  local state = redis.call('HGET', KEYS[1], ARGV[i])
  if not state or cjson.decode(state)['status'] ~= 'done' then
    redis.call('ZADD', KEYS[2], 'XX', now, job)
    return 'joined'
  end
end
local at = 8 + joins
for i = at + 1, at + 2 * tonumber(ARGV[at]), 2 do redis.call('LPUSH', ARGV[i], ARGV[i + 1]) end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'outputs', ARGV[6], 'status', 'succeeded', 'finished_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  redis.call('ZREM', KEYS[2], job)
  redis.call('HINCRBY', KEYS[3], (redis.call('HGET', KEYS[1], 'kind') or '') .. '|succeeded', 1)
  return 'ended'
end
redis.call('ZADD', KEYS[2], 'XX', now, job)
return 'advanced'
