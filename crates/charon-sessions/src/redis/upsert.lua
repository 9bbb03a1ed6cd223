#!lua name=__LIBRARY__
-- charon-sessions: optimistic-locking upsert of one session.
--
-- KEYS[1]  the user's hash, <prefix>.<user_id>.<session_type>
-- ARGV[1]  session field (the session id)
-- ARGV[2]  lock field (l.<session id>)
-- ARGV[3]  new lock version, decimal; the caller read new - 1 (0 = create)
-- ARGV[4]  signed session value
-- ARGV[5]  absolute expiry of both fields, unix seconds
--
-- Returns 1 when written, 0 on a lock conflict (nothing written).
-- A missing lock field only matches a create: a stale update of a deleted or
-- expired session must not bring it back.
local function upsert(keys, args)
  local key = keys[1]
  local field, lock_field, new_lock, value, exat = args[1], args[2], args[3], args[4], args[5]
  local expected = tonumber(new_lock) - 1
  local stored = redis.call('HGET', key, lock_field)
  if expected == 0 then
    if stored then
      return 0
    end
  elseif not stored or tonumber(stored) ~= expected then
    return 0
  end
  redis.call('HSETEX', key, 'EXAT', exat, 'FIELDS', 2, field, value, lock_field, new_lock)
  return 1
end

redis.register_function{function_name = '__UPSERT__', callback = upsert}
