-- Applies one validated event to its profile, the way rtcdp's applyEvent (profiles/profile.ts)
-- counts it, unless its messageId was seen within the dedup TTL. Redis runs a script
-- atomically, so the dedup check and the read-modify-write of the profile cannot interleave
-- with another event's. Returns 1 when the event was applied and 0 for a duplicate.
--
-- KEYS[1]  the profile hash
-- KEYS[2]  the dedup key of the event's messageId
-- KEYS[3]  the list of the profile's most recent events, newest first
--
-- ARGV, in order, as bench/baseline/redis-profiles.ts builds it:
--   1  dedup TTL in seconds
--   2  event time in epoch ms
--   3  the name the event counts under
--   4  the event as rtcdp's log stores it (msgpack), for the recent-events list
--   5  recent events kept (0 keeps none)
--   6  max event names
--   7  max summed properties per event name
--   8  max identifiers
--   then three lists, each after its length N:
--   N identifiers as type, value
--   N traits as name, JSON value, in the order they are applied
--   N numeric properties as name, number
--
-- Profile hash fields:
--   count, first, last   eventCount and the earliest and latest event time (epoch ms)
--   names                how many event names have stats
--   e:NAME               cmsgpack map { c = count, f = first ms, l = last ms, n = summed
--                        properties, s = { property = sum } } of one event name
--   t:NAME, tt:NAME      a trait's JSON value and the event time that set it
--   ids                  cmsgpack array type1, value1, type2, value2, ... in first-seen order
--
-- Numbers are added in Lua, as doubles, like JavaScript adds them. Arguments that Redis
-- numbers are passed as the strings the caller sent, because redis.call formats a Lua number
-- with 14 significant digits.

-- NOTE: Redis does not roll back a script that fails after this SET, so an event whose apply
-- failed would count as a duplicate when it is sent again. Validation before the call keeps
-- the arguments well-formed, and no such failure is known.
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end

local profile = KEYS[1]
local timeText = ARGV[2]
local time = tonumber(timeText)
local name = ARGV[3]
local recentPayload = ARGV[4]
local recentLimit = tonumber(ARGV[5])
local nameLimit = tonumber(ARGV[6])
local sumLimit = tonumber(ARGV[7])
local identifierLimit = tonumber(ARGV[8])
local at = 9

-- Identifiers: add the ones the profile does not have yet, up to the limit.
local identifierCount = tonumber(ARGV[at])
at = at + 1
if identifierCount > 0 then
  local packed = redis.call('HGET', profile, 'ids')
  local ids = {}
  if packed then ids = cmsgpack.unpack(packed) end
  local changed = false
  for _ = 1, identifierCount do
    local idType, idValue = ARGV[at], ARGV[at + 1]
    at = at + 2
    local known = false
    for j = 1, #ids, 2 do
      if ids[j] == idType and ids[j + 1] == idValue then
        known = true
        break
      end
    end
    if not known and #ids < identifierLimit * 2 then
      ids[#ids + 1] = idType
      ids[#ids + 1] = idValue
      changed = true
    end
  end
  if changed then redis.call('HSET', profile, 'ids', cmsgpack.pack(ids)) end
end

-- Traits: last writer wins by event time, and an event as old as the stored value wins too.
local traitCount = tonumber(ARGV[at])
at = at + 1
if traitCount > 0 then
  local timeFields = {}
  for k = 1, traitCount do timeFields[k] = 'tt:' .. ARGV[at + (k - 1) * 2] end
  local setTimes = redis.call('HMGET', profile, unpack(timeFields))
  local latest = {}
  for k = 1, traitCount do
    local traitName, value = ARGV[at], ARGV[at + 1]
    at = at + 2
    local setAt = latest[traitName] or setTimes[k]
    if not setAt or tonumber(setAt) <= time then
      redis.call('HSET', profile, 't:' .. traitName, value, 'tt:' .. traitName, timeText)
      latest[traitName] = timeText
    end
  end
end

-- Counts and event times of the profile.
local totals = redis.call('HMGET', profile, 'count', 'first', 'last', 'names')
local count = tonumber(totals[1] or '0') + 1
local first, last = totals[2], totals[3]
if count == 1 or time < tonumber(first) then first = timeText end
if count == 1 or time > tonumber(last) then last = timeText end
local names = tonumber(totals[4] or '0')

-- Stats of the event name: a name beyond the limit counts under "(other)".
local statsField = 'e:' .. name
local packedStats = redis.call('HGET', profile, statsField)
if not packedStats and names >= nameLimit then
  statsField = 'e:(other)'
  packedStats = redis.call('HGET', profile, statsField)
end
local stats
if packedStats then
  stats = cmsgpack.unpack(packedStats)
else
  stats = { c = 0, f = time, l = time, n = 0, s = {} }
  names = names + 1
end
stats.c = stats.c + 1
if time < stats.f then stats.f = time end
if time > stats.l then stats.l = time end

local propertyCount = tonumber(ARGV[at])
at = at + 1
for _ = 1, propertyCount do
  local property, value = ARGV[at], tonumber(ARGV[at + 1])
  at = at + 2
  local sum = stats.s[property]
  if sum ~= nil then
    stats.s[property] = sum + value
  elseif stats.n < sumLimit then
    stats.s[property] = value
    stats.n = stats.n + 1
  end
end

redis.call('HSET', profile, statsField, cmsgpack.pack(stats), 'count', tostring(count), 'first', first, 'last', last, 'names', tostring(names))

if recentLimit > 0 then
  redis.call('LPUSH', KEYS[3], recentPayload)
  redis.call('LTRIM', KEYS[3], 0, recentLimit - 1)
end
return 1
