-- Extend-only deadline of one hold or open, in the server's clock.
-- KEYS[1] = state (sorted set: member -> deadline ms)
-- KEYS[2] = probe lease key (opens only: a new open ends the old probe)
-- ARGV[1] = member ("h:<digest>" or "o:<digest>"), ARGV[2] = wait ms,
-- ARGV[3] = cap ms, ARGV[4] = channel, ARGV[5] = message prefix ("h <digest>")
-- Returns {changed, deadline ms (0: none), now ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
local wait = math.min(tonumber(ARGV[2]), tonumber(ARGV[3]))
local deadline = now + wait
if wait <= 0 or deadline <= cur then
  return {0, cur, now}
end
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]) + 1000)
if KEYS[2] then
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[4],
  ARGV[5] .. ' ' .. string.format('%d', deadline) .. ' ' .. string.format('%d', now))
return {1, deadline, now}
