-- A caller's turn on a rate budget. KEYS[1]: the budget's key prefix. ARGV[2] interval (ms), ARGV[3]
-- horizon (ms), ARGV[4] window (ms: period + guard), ARGV[5] limit, ARGV[6] holder.
-- Turns are scheduled GCRA-style (`tat`, one interval apart, reserved for their holders), but a call goes
-- only if the log of calls sent in the last window has room: a late caller uses the room its turn left,
-- and calls that bunch up can never put more than `limit` into one window.
-- Returns {'go'|'wait'|'full', ms as a string}.
local K, interval, horizon, window, limit, holder =
  KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local RESV, TAT, PAUSE, LOG = K .. ':resv', K .. ':tat', K .. ':paused', K .. ':log'
local EARLY = 20
local paused = tonumber(redis.call('GET', PAUSE) or '0')
redis.call('ZREMRANGEBYSCORE', LOG, '-inf', now - window)

local function admit()
  if now < paused or redis.call('ZCARD', LOG) >= limit then return false end
  redis.call('ZADD', LOG, now, holder .. '@' .. tostring(now))
  redis.call('PEXPIRE', LOG, math.ceil(window) + 1000)
  return true
end

local slot = redis.call('ZSCORE', RESV, holder)
if slot then
  slot = tonumber(slot)
  if now + EARLY < slot then return {'wait', tostring(slot - now)} end
  redis.call('ZREM', RESV, holder)
  if admit() then return {'go', '0'} end
end
redis.call('ZREMRANGEBYSCORE', RESV, '-inf', now - 60000)

local earliest = math.max(now, paused)
if redis.call('ZCARD', LOG) >= limit then
  local oldest = redis.call('ZRANGE', LOG, 0, 0, 'WITHSCORES')[2]
  earliest = math.max(earliest, tonumber(oldest) + window)
end
local tat = math.max(tonumber(redis.call('GET', TAT) or '0'), earliest)
if tat - now > horizon then return {'full', tostring(tat - now - horizon)} end
redis.call('SET', TAT, tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 60000)
if tat - now <= EARLY and admit() then return {'go', '0'} end
redis.call('ZADD', RESV, tat, holder)
return {'wait', tostring(math.max(tat - now, 1))}
