-- Compare-and-delete close of one open: only the open whose deadline is the
-- token the closer saw, so a late close never ends a newer open. The probe
-- lease ends with the open; with no live open left (it expired, or the
-- token is 0), the closer's own lease ends, so the other replicas may probe,
-- and they hear that the probe succeeded.
-- KEYS[1] = state, KEYS[2] = probe lease key
-- ARGV[1] = member, ARGV[2] = token (deadline ms), ARGV[3] = channel,
-- ARGV[4] = message ("c <digest> <token>"), ARGV[5] = the closer's name
-- Returns 1 when closed, 0 otherwise.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if cur ~= 0 and cur == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
if cur <= now and redis.call('GET', KEYS[2]) == ARGV[5] then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 0
