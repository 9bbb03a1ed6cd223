#!lua name=__LIBRARY__
-- charon-sessions: optimistic-locking upsert of one session.
--
-- KEYS[1]  the user's hash, <prefix>.<user_id>.<session_type>
-- ARGV[1]  session field (the session id)
-- ARGV[2]  lock field (l.<session id>)
-- ARGV[3]  new lock version, decimal; the caller read new - 1 (0 = create)
-- ARGV[4]  signed session value
-- ARGV[5]  absolute expiry of both fields, unix seconds
-- ARGV[6]  most sessions in the hash on a create, decimal; 0 = no limit
-- ARGV[7]  'evict' (evict the sessions expiring soonest to make room) or
--          'refuse'
--
-- Returns 0 on a lock conflict (nothing written), -1 when a create is
-- refused by the limit (nothing written), else 1 + the number of sessions
-- evicted to make room (written).
-- A missing lock field only matches a create: a stale update of a deleted or
-- expired session must not bring it back.

-- Most sessions one create evicts: a hash already far over the limit
-- (written before it, or by another program) shrinks over several logins.
local MAX_EVICTIONS = 100
-- HEXPIRETIME is sent for this many fields at a time (Lua's unpack limit).
local CHUNK = 1000

-- Evicts the sessions expiring soonest until `limit - 1` are left (at most
-- MAX_EVICTIONS); returns how many, or -1 when `policy` is 'refuse' and the
-- hash is full.
local function make_room(key, limit, policy)
  -- Every session has two fields: count exactly only near the limit.
  if redis.call('HLEN', key) + 1 < 2 * limit then
    return 0
  end
  local sessions = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 2) ~= 'l.' then
      sessions[#sessions + 1] = field
    end
  end
  local excess = #sessions - limit + 1
  if excess <= 0 then
    return 0
  end
  if policy == 'refuse' then
    return -1
  end
  local order = {}
  for first = 1, #sessions, CHUNK do
    local last = math.min(first + CHUNK - 1, #sessions)
    local expiries = redis.call('HEXPIRETIME', key, 'FIELDS', last - first + 1,
      unpack(sessions, first, last))
    for i = first, last do
      local at = expiries[i - first + 1]
      -- -1: no expiry (written by something else than this function).
      if at < 0 then at = math.huge end
      order[#order + 1] = {at, sessions[i]}
    end
  end
  table.sort(order, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  excess = math.min(excess, MAX_EVICTIONS)
  for i = 1, excess do
    redis.call('HDEL', key, order[i][2], 'l.' .. order[i][2])
  end
  return excess
end

local function upsert(keys, args)
  local key = keys[1]
  local field, lock_field, new_lock, value, exat = args[1], args[2], args[3], args[4], args[5]
  local limit, policy = tonumber(args[6] or '0'), args[7]
  local expected = tonumber(new_lock) - 1
  local stored = redis.call('HGET', key, lock_field)
  local evicted = 0
  if expected == 0 then
    if stored then
      return 0
    end
    if limit > 0 then
      evicted = make_room(key, limit, policy)
      if evicted < 0 then
        return -1
      end
    end
  elseif not stored or tonumber(stored) ~= expected then
    return 0
  end
  redis.call('HSETEX', key, 'EXAT', exat, 'FIELDS', 2, field, value, lock_field, new_lock)
  return 1 + evicted
end

redis.register_function{function_name = '__UPSERT__', callback = upsert}
