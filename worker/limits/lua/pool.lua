-- Prepended to every pool script (after clock.lua). KEYS[1]: the pool's key prefix;
-- ARGV[2]: pool size; ARGV[3]: lease time to live (ms). Defines paused_until, unpark and wake.
local P, size, ttl = KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local LEASES, WAITING, TENANTS, RR, PAUSE = P .. ':leases', P .. ':waiting', P .. ':tenants', P .. ':rr', P .. ':paused'

local function paused_until()
  local v = tonumber(redis.call('GET', PAUSE) or '0')
  if v > now then return v end
  return 0
end

local function next_tenant()
  local last = redis.call('GET', RR)
  local t
  if last then t = redis.call('ZRANGEBYLEX', TENANTS, '(' .. last, '+', 'LIMIT', 0, 1)[1] end
  if not t then t = redis.call('ZRANGEBYLEX', TENANTS, '-', '+', 'LIMIT', 0, 1)[1] end
  return t
end

local function unpark(holder)
  local w = redis.call('HGET', WAITING, holder)
  if not w then return nil end
  local d = cjson.decode(w)
  redis.call('HDEL', WAITING, holder)
  local tq = P .. ':t:' .. d['tenant']
  redis.call('ZREM', tq, holder)
  if redis.call('ZCARD', tq) == 0 then redis.call('ZREM', TENANTS, d['tenant']) end
  return d
end

local function wake()
  redis.call('ZREMRANGEBYSCORE', LEASES, '-inf', now)
  if paused_until() > 0 then return 0 end
  local free = size - redis.call('ZCARD', LEASES)
  local woken = 0
  while free > 0 do
    local tenant = next_tenant()
    if not tenant then break end
    redis.call('SET', RR, tenant)
    local head = redis.call('ZRANGE', P .. ':t:' .. tenant, 0, 0)[1]
    local d = head and unpark(head)
    if d then
      redis.call('ZADD', LEASES, now + ttl, head)
      -- RPUSH: kombu's consumers pop from the right, so the woken stage, which holds its slot now,
      -- runs before stages queued without one.
      redis.call('RPUSH', d['queue'], d['message'])
      free = free - 1
      woken = woken + 1
    elseif not head then
      redis.call('ZREM', TENANTS, tenant)
    end
  end
  return woken
end
