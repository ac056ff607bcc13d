-- A lease of up to n cells of a GCRA, in the server's clock (microseconds).
-- KEYS[1] = theoretical arrival time
-- ARGV[1] = emission interval us, ARGV[2] = tolerance us, ARGV[3] = n
-- Returns {cells granted, us until the next cell conforms (when none)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat > now + tau then
  return {0, tat - tau - now}
end
local k = math.min(math.floor((now + tau - tat) / T) + 1, n)
local new = tat + k * T
redis.call('SET', KEYS[1], string.format('%d', new), 'PX',
  math.floor((new - now) / 1000) + 1000)
return {k, 0}
