-- A caller's turn on a rate budget (GCRA with reservations). KEYS[1]: the budget's key prefix;
-- ARGV[2] interval (ms), ARGV[3] horizon (ms), ARGV[4] how late a reserved turn may still be used (ms),
-- ARGV[5] holder. Returns {'go'|'wait'|'full', ms as a string}.
local K, interval, horizon, late, holder = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local RESV, TAT, PAUSE = K .. ':resv', K .. ':tat', K .. ':paused'
local EARLY = 2
local paused = tonumber(redis.call('GET', PAUSE) or '0')
local slot = redis.call('ZSCORE', RESV, holder)
if slot then
  slot = tonumber(slot)
  if now + EARLY < slot then return {'wait', tostring(slot - now)} end
  redis.call('ZREM', RESV, holder)
  if now - slot <= late and now >= paused then return {'go', '0'} end
end
redis.call('ZREMRANGEBYSCORE', RESV, '-inf', now - 60000)
local tat = math.max(tonumber(redis.call('GET', TAT) or '0'), now, paused)
if tat - now > horizon then return {'full', tostring(tat - now - horizon)} end
redis.call('SET', TAT, tostring(tat + interval), 'PX', math.ceil(tat + interval - now) + 60000)
if tat - now <= EARLY then return {'go', '0'} end
redis.call('ZADD', RESV, tat, holder)
return {'wait', tostring(tat - now)}
