-- Claim provider id ARGV[1] for one genq record and record it there, in one step, so no crash leaves an
-- id claimed but unrecorded (a search after a crash skips claimed ids, and would create another).
-- KEYS[1] the claimed set of its kind, KEYS[2] the record's hash; ARGV[2] the hash field.
-- Returns false if the id was claimed before (nothing is recorded), else the id the record holds.
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return false end
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
return redis.call('HGET', KEYS[2], ARGV[2])
