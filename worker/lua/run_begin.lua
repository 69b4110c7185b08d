-- A stage run begins. KEYS[1] the job, KEYS[2] the run's lease, KEYS[3] the running index.
-- ARGV[1] the message's task id, ARGV[2] this run's holder ("<task id> <host>:<pid>"), ARGV[3] the
-- lease's time to live (ms), ARGV[4] the stage's field, ARGV[5] now (ISO), ARGV[6] '1' if the stage
-- follows a cancelled job to its provider job's end.
-- Returns {'busy'} when another process runs this very message now (a redelivered copy: its holder
-- renews the lease while it runs), {'missing'}, {'ended', status} for a job that has ended, {'done'}
-- for a stage that advanced before (a copy of a message whose run finished); otherwise the run is
-- recorded (status running, one more attempt, its lease taken) and {'run', the job's hash} returned.
-- A queued job moves to running in the jobs index too (index_move: layout.INDEX_LUA, which JobStore puts
-- before this script).
local held = redis.call('GET', KEYS[2])
if held and held ~= ARGV[2] and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  return {'busy'}
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if status == 'succeeded' or status == 'failed' or (status == 'cancelled' and ARGV[6] ~= '1') then
  return {'ended', status}
end
local state = {}
local raw = redis.call('HGET', KEYS[1], ARGV[4])
if raw then
  state = cjson.decode(raw)
  if state['status'] == 'done' then return {'done'} end
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running')
  local t = redis.call('TIME')
  local job = string.match(KEYS[1], '[^:]+$')
  redis.call('ZADD', KEYS[3], 'NX', t[1] * 1000 + math.floor(t[2] / 1000), job)
  index_move(job, 'queued', 'running')
end
state['status'] = 'running'
state['attempts'] = (tonumber(state['attempts']) or 0) + 1
if state['started_at'] == nil or state['started_at'] == cjson.null then state['started_at'] = ARGV[5] end
redis.call('HSET', KEYS[1], ARGV[4], cjson.encode(state), 'updated_at', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return {'run', redis.call('HGETALL', KEYS[1])}
