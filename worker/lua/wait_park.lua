-- Park a stage until its provider job ends. KEYS[1] entries, KEYS[2] messages, KEYS[3] the account's
-- due set, KEYS[4] the job's result. ARGV[1] provider id, ARGV[2] entry (JSON), ARGV[3] first check in
-- (ms), ARGV[4] deadline in (ms), ARGV[5] queue, ARGV[6] message.
-- If the job already ended (a webhook came first), the message is pushed at once: returns 0.
-- Otherwise returns the time the wait started (ms); a stage parked again keeps its first start.
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('RPUSH', ARGV[5], ARGV[6])
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local entry = cjson.decode(ARGV[2])
local old = redis.call('HGET', KEYS[1], ARGV[1])
entry['since'] = now
if old then entry['since'] = cjson.decode(old)['since'] end
entry['deadline'] = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5] .. '\n' .. ARGV[6])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
return entry['since']
