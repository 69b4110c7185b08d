-- Push what is due onto its queue: KEYS are schedules (each with KEYS[i] .. ':items'); ARGV[1] the most
-- to move. Only what this script's own ZREM removed is pushed, so any number of movers push an entry
-- once. RPUSH: kombu pops from the right, so a re-run goes before new work. Returns {moved, ms until
-- the next entry is due (-1: none)}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local room, moved, next_due = tonumber(ARGV[1]), 0, -1
for _, key in ipairs(KEYS) do
  local items = key .. ':items'
  if room > 0 then
    for _, run in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, room)) do
      if redis.call('ZREM', key, run) == 1 then
        local v = redis.call('HGET', items, run)
        redis.call('HDEL', items, run)
        if v then
          local i = string.find(v, '\n', 1, true)
          redis.call('RPUSH', string.sub(v, 1, i - 1), string.sub(v, i + 1))
          moved, room = moved + 1, room - 1
        end
      end
    end
  end
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  if head then
    local wait = math.max(0, tonumber(head) - now)
    if next_due < 0 or wait < next_due then next_due = wait end
  end
end
return {moved, next_due}
