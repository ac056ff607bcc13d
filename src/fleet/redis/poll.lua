-- Every live hold and open, in the server's clock.
-- KEYS[1] = state; ARGV[1] = most entries to return
-- Returns {now ms, live entries, {member, deadline, member, deadline, ...}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf', 'WITHSCORES',
  'LIMIT', 0, tonumber(ARGV[1]))
return {now, n, items}
