-- Take parked ids to check from the due set KEYS[1]: nothing unless the earliest check is due; then up
-- to ARGV[1] ids, oldest-due first, including those due within ARGV[3] ms, so a status request carries
-- a full page instead of the few ids that happen to be due this instant (a check made a little early
-- costs nothing; a request does). Their next check is pushed ARGV[2] ms ahead: a sweeper that dies
-- with them in hand leaves them to be checked again then. Returns the ids.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
if not head or tonumber(head) > now then return {} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + tonumber(ARGV[3]), 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id) end
return ids
