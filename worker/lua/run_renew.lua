-- A worker's heartbeat for the stage runs it has in progress. ARGV[1] the lease's time to live (ms), then
-- for each run: its lease key, its task id, its holder ("<task id> <host>:<pid>").
-- A lease still held by the run is renewed; a lease that is gone (lapsed, or lost with a Redis restart)
-- is taken again; a lease another message's run took is left alone. Returns how many were renewed.
local renewed = 0
for i = 2, #ARGV, 3 do
  local held = redis.call('GET', ARGV[i])
  if not held or string.sub(held, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. ' ' then
    redis.call('SET', ARGV[i], ARGV[i + 2], 'PX', tonumber(ARGV[1]))
    renewed = renewed + 1
  end
end
return renewed
