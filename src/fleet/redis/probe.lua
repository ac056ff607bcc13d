-- The fleet's one half-open probe of a breaker: a lease, re-entrant for its
-- holder.
-- KEYS[1] = probe lease key; ARGV[1] = holder, ARGV[2] = lease ms
-- Returns {1, 0} when granted, {0, ms left on the holder's lease} otherwise.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, 0}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, 0}
end
return {0, math.max(redis.call('PTTL', KEYS[1]), 0)}
