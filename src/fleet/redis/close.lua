-- Compare-and-delete close of one open: only the open whose deadline is the
-- token the closer saw, so a late close never ends a newer open.
-- KEYS[1] = state, KEYS[2] = probe lease key
-- ARGV[1] = member, ARGV[2] = token (deadline ms), ARGV[3] = channel,
-- ARGV[4] = message ("c <digest> <token>")
-- Returns 1 when closed, 0 otherwise.
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur and tonumber(cur) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0
