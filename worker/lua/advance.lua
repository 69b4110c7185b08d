-- A stage run is done: record it and move the job on, in one step. KEYS[1] the job, KEYS[2] the running
-- index, KEYS[3] the jobs-by-outcome counters, KEYS[4] the pipeline notices (layout.PIPELINE_NOTIFY_KEY).
-- ARGV[1] the stage's field, ARGV[2] its state (JSON, status done), ARGV[3] now (ISO), ARGV[4] the
-- job's time to live once it ends (s), ARGV[5] '1' if the job ends with this step, ARGV[6] its outputs
-- (JSON) then, ARGV[7] how many groups follow (G), then G groups, each: how many fields its join waits
-- for (J), J fields (each must hold a done state), how many messages it pushes (P), P pairs: queue,
-- message. A group whose join is done pushes its messages; the job ends only once every join is done.
-- Returns 'again' when the stage had advanced before (a copy of its message: nothing is pushed twice),
-- 'joined' while no group's join is done, 'ended' when the job succeeded, 'advanced' when messages
-- were pushed, the status of a job that is no longer running (the state is recorded, nothing pushed),
-- or false when the job has no record. A job of a pipeline that ends pushes the run of its pipeline
-- that waits for it (its notice), in the same step. A job that ends moves to succeeded in the jobs index
-- (index_move: layout.INDEX_LUA, which JobStore puts before this script).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local before = redis.call('HGET', KEYS[1], ARGV[1])
if before and cjson.decode(before)['status'] == 'done' then return 'again' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'updated_at', ARGV[3])
if status ~= 'running' then return status end
local job = string.match(KEYS[1], '[^:]+$')
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function all_done(at, count)
  for i = at, at + count - 1 do
    local state = redis.call('HGET', KEYS[1], ARGV[i])
    if not state or cjson.decode(state)['status'] ~= 'done' then return false end
  end
  return true
end
local pushed, waiting, at = false, false, 8
for _ = 1, tonumber(ARGV[7]) do
  local joins = tonumber(ARGV[at])
  local ready = all_done(at + 1, joins)
  at = at + 1 + joins
  local pushes = tonumber(ARGV[at])
  if ready then
    for i = at + 1, at + 2 * pushes, 2 do redis.call('LPUSH', ARGV[i], ARGV[i + 1]) end
    pushed = pushed or pushes > 0
  else
    waiting = true
  end
  at = at + 1 + 2 * pushes
end
if ARGV[5] == '1' and not waiting then
  redis.call('HSET', KEYS[1], 'outputs', ARGV[6], 'status', 'succeeded', 'finished_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
  redis.call('ZREM', KEYS[2], job)
  index_move(job, 'running', 'succeeded')
  redis.call('HINCRBY', KEYS[3], (redis.call('HGET', KEYS[1], 'kind') or '') .. '|succeeded', 1)
  local notice = redis.call('HGET', KEYS[4], job)
  if notice then
    redis.call('HDEL', KEYS[4], job)
    notice = cjson.decode(notice)
    redis.call('LPUSH', notice['queue'], notice['message'])
  end
  return 'ended'
end
redis.call('ZADD', KEYS[2], 'XX', now, job)
if pushed or not waiting then return 'advanced' end
return 'joined'
