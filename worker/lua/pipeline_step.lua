-- A pipeline's step run makes its job, or waits for it again. KEYS[1] the pipeline, KEYS[2] the step's
-- job, KEYS[3] the pipeline notices (layout.PIPELINE_NOTIFY_KEY), KEYS[4] the job's queue.
-- ARGV[1] the pipeline's field for the job's id (pid:<run>), ARGV[2] the job's id, ARGV[3] the notice
-- (JSON: the pipeline's run to push when the job ends), ARGV[4] the job's start message, ARGV[5] its
-- creation time (ms), ARGV[6..] the job's hash (none of these three: only wait for a job made before).
-- The job (in the jobs index's queued set too: index_add, layout.INDEX_LUA, which JobStore puts before
-- this script), its start message, its notice and its id in the pipeline are written in one step, and only
-- while the pipeline runs, so a job is made once, never for a pipeline that ended, and never without
-- its notice. Returns {'created'}, {'waiting'} (the job exists and has not ended: its notice is set),
-- {'ended', status} (the job has ended: its notice was pushed or is not needed), {'missing'} (no such
-- job, and none to make), or {'stopped', status} for a pipeline that is no longer running.
local pipeline = redis.call('HGET', KEYS[1], 'status')
if pipeline ~= 'running' then return {'stopped', pipeline or 'missing'} end
local status = redis.call('HGET', KEYS[2], 'status')
if not status then
  if #ARGV < 6 then return {'missing'} end
  redis.call('HSET', KEYS[2], unpack(ARGV, 6))
  index_add(ARGV[5], ARGV[2])
  redis.call('LPUSH', KEYS[4], ARGV[4])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return {'created'}
end
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return {'ended', status} end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
return {'waiting'}
