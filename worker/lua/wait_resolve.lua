-- A provider job ended (a sweep or a webhook saw it). KEYS[1] entries, KEYS[2] messages, KEYS[3] the
-- result. ARGV[1] provider id, ARGV[2] result (JSON), ARGV[3] result TTL (s), ARGV[4] due-set prefix.
-- The first result wins: returns -1 when one was recorded before (nothing changes), 1 when a parked
-- stage was woken (its message pushed to the front of its queue), 0 when none was parked yet.
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'EX', tonumber(ARGV[3])) == false then return -1 end
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
redis.call('ZREM', ARGV[4] .. cjson.decode(entry)['account'], ARGV[1])
local v = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if not v then return 0 end
local i = string.find(v, '\n', 1, true)
redis.call('RPUSH', string.sub(v, 1, i - 1), string.sub(v, i + 1))
return 1
