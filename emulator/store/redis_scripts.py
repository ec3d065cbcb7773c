"""The Lua scripts of the Redis store: each runs atomically on the server, so no two processes interleave."""

# A completed record's JSON contains this: the scripts skip such requests without decoding the JSON.
COMPLETED = '"state":"COMPLETED"'

# Queues a new request behind every earlier one (of its priority) from any process; returns its position.
SUBMIT = """
local seq = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) * 1e12 + seq, ARGV[4])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return redis.call('ZRANK', KEYS[2], ARGV[4])
"""

# Pops the queue head (skipping requests cancelled while queued) and leases it to this process.
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
while true do
  local item = redis.call('ZPOPMIN', KEYS[1])
  if #item == 0 then return false end
  local body = redis.call('GET', ARGV[4] .. item[1])
  if body and not string.find(body, ARGV[5], 1, true) then
    local member = ARGV[3] .. '\\n' .. item[1] .. '\\n' .. item[2] .. '\\n' .. ARGV[2]
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), member)
    return {member, body}
  end
end
"""

RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""

# Leases past their expiry: the runner died, so the request goes back to its place in the queue.
REAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  local ns, id, score = string.match(member, '^(.-)\\n(.-)\\n(.-)\\n')
  local body = redis.call('GET', ARGV[1] .. 'req:' .. ns .. ':' .. id)
  if body and not string.find(body, ARGV[2], 1, true) then
    redis.call('ZADD', ARGV[1] .. 'queue:' .. ns, tonumber(score), id)
  end
end
return #expired
"""

# Puts a request whose run failed back in the queue for any process to claim (the record itself,
# back IN_QUEUE, is written just before). Under the lease this process took it with: at the score
# the lease keeps (its place). A lease already gone expired, and the reaper queued the request
# again: nothing more to do. Without a lease (started by hand), behind its priority's others.
REQUEUE = """
local score
if ARGV[1] ~= '' then
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
  score = tonumber(string.match(ARGV[1], '^.-\\n.-\\n(.-)\\n'))
else
  score = tonumber(ARGV[2]) * 1e12 + redis.call('INCR', KEYS[3])
end
redis.call('ZADD', KEYS[1], score, ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
"""

# Deletes the keys matching each pattern, except KEYS[1] (the generation: a reset is no data loss).
CLEAR = """
local n = 0
for _, pattern in ipairs(ARGV) do
  for _, key in ipairs(redis.call('KEYS', pattern)) do
    if key ~= KEYS[1] then redis.call('DEL', key); n = n + 1 end
  end
end
return n
"""

# Writes back a record a process still holds after Redis lost it: only when Redis has no copy
# or an older one (by version), so the newest copy among the processes wins. A lease this
# process holds is taken again whatever the copy. Returns the stored copy when that one stays.
RESTORE = """
if ARGV[11] ~= '' then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[5], tonumber(t[1]) + tonumber(ARGV[12]), ARGV[11])
end
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and tonumber(stored['version']) ~= nil
      and tonumber(stored['version']) >= tonumber(ARGV[2]) then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[7] == '1' then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8])) end
if ARGV[6] == '1' then
  local seq = redis.call('INCR', KEYS[3])
  redis.call('ZADD', KEYS[2], tonumber(ARGV[3]) * 1e12 + seq, ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
end
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('PUBLISH', ARGV[9], ARGV[10])
return false
"""
