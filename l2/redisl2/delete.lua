-- Delete: KEYS are the group's fence and clear keys (unused), then the entry
-- and version key of each key; ARGV[1] is how long a version is kept, in ms.
-- Removes each entry and bumps its version.
for i = 3, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
end
return 0
