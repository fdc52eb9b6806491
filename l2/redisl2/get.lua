-- Get: KEYS are the group's fence and clear keys, then the entry and version
-- key of each key; ARGV[1] is the group's tag key prefix. Returns the fence,
-- then per key {version} or, when found, {version, value, ttl ms, tags...}.
-- An entry stored under an older clear generation or tag generation is not
-- found.
local fence = redis.call('GET', KEYS[1]) or '0'
local clear = redis.call('GET', KEYS[2]) or '0'
local out = {fence}
for i = 3, #KEYS, 2 do
  local r = {redis.call('GET', KEYS[i + 1]) or '0'}
  local h = redis.call('HGETALL', KEYS[i])
  if #h > 0 then
    local valid, value, stored, tags = true, nil, nil, {}
    for j = 1, #h, 2 do
      local f = h[j]
      if f == 'v' then
        value = h[j + 1]
      elseif f == 'c' then
        stored = h[j + 1]
      else
        local tag = string.sub(f, 2)
        if (redis.call('GET', ARGV[1] .. tag) or '0') ~= h[j + 1] then
          valid = false
        end
        tags[#tags + 1] = tag
      end
    end
    if valid and value and stored == clear then
      local ttl = redis.call('PTTL', KEYS[i])
      if ttl > 0 then
        r[2] = value
        r[3] = ttl
        for _, t in ipairs(tags) do
          r[#r + 1] = t
        end
      end
    end
  end
  out[#out + 1] = r
end
return out
