-- Set: KEYS are the group's fence and clear keys, then the entry and version
-- key of each item; ARGV[1] is the group's tag key prefix, then per item:
-- key version, group version (as Get returned them), value, ttl ms, tag
-- count, tags. An item is stored only if both versions still hold, with the
-- current clear and tag generations. Returns how many were stored.
local fence = redis.call('GET', KEYS[1]) or '0'
local clear = redis.call('GET', KEYS[2]) or '0'
local tagPrefix = ARGV[1]
local stored = 0
local a = 2
for i = 3, #KEYS, 2 do
  local version, groupVersion, value, ttl = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local ntags = tonumber(ARGV[a + 4])
  local first = a + 5
  a = first + ntags
  if groupVersion == fence and (redis.call('GET', KEYS[i + 1]) or '0') == version then
    redis.call('DEL', KEYS[i])
    redis.call('HSET', KEYS[i], 'v', value, 'c', clear)
    for j = first, first + ntags - 1 do
      redis.call('HSET', KEYS[i], 't' .. ARGV[j], redis.call('GET', tagPrefix .. ARGV[j]) or '0')
    end
    redis.call('PEXPIRE', KEYS[i], ttl)
    stored = stored + 1
  end
end
return stored
