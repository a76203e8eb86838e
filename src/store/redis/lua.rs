//! The Lua scripts of [`super::RedisStore`]: each trait call that reads and then writes
//! runs as one script, which Redis executes atomically (no other command runs meanwhile),
//! so single use holds across replicas.
//!
//! Every script gets the key prefix as `ARGV[1]` and builds its keys from it, so the
//! store suits one Redis server (or a replicated primary), not Redis Cluster. Layout:
//! `client:ID` (hash) and the set `clients`; `pending:HEX` (hash, expires) and the sorted
//! set `pending` by `expires_at` (the bound); `code:HEX` and `token:HEX` (hashes, expire)
//! and the sorted set `expiry` of both by `expires_at` (the purge); `person:UID:MEMBER`
//! (hash) and the sets `people` (`UID:MEMBER`) and `user:UID:people` (member ids);
//! `grant:ID` (hash), the sets `grants`, `user:UID:grants` and `grant_tokens:ID` (token
//! hashes); `user:UID:codes` (code hashes, expires with its last code).

/// Shared by every script.
pub(super) const LIB: &str = r#"
local P = ARGV[1]
local function fields(raw)
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
-- Revokes a grant and deletes its tokens; 1 when it was live.
local function revoke_grant(id)
  local g = P .. 'grant:' .. id
  local live = 0
  if redis.call('HGET', g, 'revoked') == '0' then
    redis.call('HSET', g, 'revoked', '1')
    live = 1
  end
  local ts = P .. 'grant_tokens:' .. id
  for _, h in ipairs(redis.call('SMEMBERS', ts)) do
    redis.call('DEL', P .. 'token:' .. h)
    redis.call('ZREM', P .. 'expiry', 'token:' .. h)
  end
  redis.call('DEL', ts)
  return live
end
-- Makes `key` live at least until `ms` (unix milliseconds).
local function extend(key, ms)
  local ttl = redis.call('PTTL', key)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if ttl < 0 or now_ms + ttl < tonumber(ms) then
    redis.call('PEXPIREAT', key, ms)
  end
end
"#;

/// ARGV: prefix, client id, bound, then field pairs; `KEYS` none. `full` or `ok`.
pub(super) const PUT_CLIENT: &str = r#"
local id = ARGV[2]
local k = P .. 'client:' .. id
local set = P .. 'clients'
if redis.call('EXISTS', k) == 0 and redis.call('SCARD', set) >= tonumber(ARGV[3]) then
  return 'full'
end
local granted = redis.call('HGET', k, 'granted')
redis.call('DEL', k)
redis.call('HSET', k, unpack(ARGV, 4))
if granted then redis.call('HSET', k, 'granted', granted) end
redis.call('SADD', set, id)
return 'ok'
"#;

/// ARGV: prefix, state hex, now, bound, expires_at, expiry ms, field pairs.
pub(super) const PUT_PENDING: &str = r#"
local z = P .. 'pending'
local now = tonumber(ARGV[3])
for _, h in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do
  redis.call('DEL', P .. 'pending:' .. h)
end
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
if redis.call('ZCARD', z) >= tonumber(ARGV[4]) then return 'full' end
local k = P .. 'pending:' .. ARGV[2]
redis.call('DEL', k)
redis.call('HSET', k, unpack(ARGV, 7))
redis.call('PEXPIREAT', k, ARGV[6])
if redis.call('EXISTS', k) == 1 then redis.call('ZADD', z, ARGV[5], ARGV[2]) end
return 'ok'
"#;

/// ARGV: prefix, `pending` or `code`, hex. The record's field pairs, or none.
pub(super) const TAKE: &str = r#"
local kind, h = ARGV[2], ARGV[3]
local k = P .. kind .. ':' .. h
local raw = redis.call('HGETALL', k)
if #raw == 0 then return raw end
redis.call('DEL', k)
if kind == 'pending' then
  redis.call('ZREM', P .. 'pending', h)
else
  redis.call('ZREM', P .. 'expiry', 'code:' .. h)
  local uid = fields(raw).user_id
  if uid then redis.call('SREM', P .. 'user:' .. uid .. ':codes', h) end
end
return raw
"#;

/// ARGV: prefix, code hex, expires_at, expiry ms, user id, field pairs.
pub(super) const PUT_CODE: &str = r#"
local h = ARGV[2]
local k = P .. 'code:' .. h
redis.call('DEL', k)
redis.call('HSET', k, unpack(ARGV, 6))
redis.call('PEXPIREAT', k, ARGV[4])
if redis.call('EXISTS', k) == 1 then
  redis.call('ZADD', P .. 'expiry', ARGV[3], 'code:' .. h)
  local s = P .. 'user:' .. ARGV[5] .. ':codes'
  redis.call('SADD', s, h)
  extend(s, ARGV[4])
end
return 'ok'
"#;

/// KEYS: the hash. ARGV: prefix, how many fields to delete, their names, field pairs.
/// Writes only when the hash exists (a person revoked meanwhile stays revoked).
pub(super) const UPDATE_IF_EXISTS: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('HDEL', KEYS[1], ARGV[2 + i]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 3 + n))
return 1
"#;

/// KEYS: the person. ARGV: prefix, now, granularity.
pub(super) const TOUCH: &str = r#"
local last = redis.call('HGET', KEYS[1], 'last_used_at')
local now = tonumber(ARGV[2])
if last and tonumber(last) <= now - tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[2])
end
return 0
"#;

/// ARGV: prefix, grant id, client id, user id, field pairs.
pub(super) const PUT_GRANT: &str = r#"
local id = ARGV[2]
local k = P .. 'grant:' .. id
redis.call('DEL', k)
redis.call('HSET', k, unpack(ARGV, 5))
redis.call('SADD', P .. 'grants', id)
redis.call('SADD', P .. 'user:' .. ARGV[4] .. ':grants', id)
local c = P .. 'client:' .. ARGV[3]
if redis.call('EXISTS', c) == 1 then redis.call('HSET', c, 'granted', '1') end
return 'ok'
"#;

/// ARGV: prefix, token hex, grant id, expires_at, expiry ms, field pairs.
pub(super) const PUT_TOKEN: &str = r#"
local h = ARGV[2]
local k = P .. 'token:' .. h
redis.call('DEL', k)
redis.call('HSET', k, unpack(ARGV, 6))
redis.call('PEXPIREAT', k, ARGV[5])
if redis.call('EXISTS', k) == 1 then
  redis.call('SADD', P .. 'grant_tokens:' .. ARGV[3], h)
  redis.call('ZADD', P .. 'expiry', ARGV[4], 'token:' .. h)
end
return 'ok'
"#;

/// ARGV: prefix, token hex, now. A live access token: `{expires_at, used, grant pairs…}`;
/// otherwise empty.
pub(super) const TOKEN: &str = r#"
local t = fields(redis.call('HGETALL', P .. 'token:' .. ARGV[2]))
if t.kind ~= 'access' or tonumber(t.expires_at) <= tonumber(ARGV[3]) then return {} end
local raw = redis.call('HGETALL', P .. 'grant:' .. t.grant_id)
local g = fields(raw)
if g.revoked ~= '0' then return {} end
if redis.call('EXISTS', P .. 'person:' .. g.user_id .. ':' .. g.member_id) == 0 then
  return {}
end
local out = {t.expires_at, t.used}
for _, v in ipairs(raw) do table.insert(out, v) end
return out
"#;

/// ARGV: prefix, token hex, now. `{unknown}`, `{reused, grant id}` or
/// `{fresh, expires_at, grant pairs…}`.
pub(super) const USE_REFRESH: &str = r#"
local k = P .. 'token:' .. ARGV[2]
local t = fields(redis.call('HGETALL', k))
if t.kind ~= 'refresh' then return {'unknown'} end
local raw = redis.call('HGETALL', P .. 'grant:' .. t.grant_id)
local g = fields(raw)
if g.revoked ~= '0' then return {'unknown'} end
if redis.call('EXISTS', P .. 'person:' .. g.user_id .. ':' .. g.member_id) == 0 then
  return {'unknown'}
end
if t.used == '1' then
  revoke_grant(t.grant_id)
  return {'reused', t.grant_id}
end
if tonumber(t.expires_at) <= tonumber(ARGV[3]) then return {'unknown'} end
redis.call('HSET', k, 'used', '1')
local out = {'fresh', t.expires_at}
for _, v in ipairs(raw) do table.insert(out, v) end
return out
"#;

/// ARGV: prefix, token hex.
pub(super) const REVOKE_TOKEN: &str = r#"
local h = ARGV[2]
local k = P .. 'token:' .. h
local t = fields(redis.call('HGETALL', k))
if t.kind == 'refresh' then
  revoke_grant(t.grant_id)
elseif t.kind then
  redis.call('DEL', k)
  redis.call('SREM', P .. 'grant_tokens:' .. t.grant_id, h)
  redis.call('ZREM', P .. 'expiry', 'token:' .. h)
end
return 0
"#;

/// ARGV: prefix, grant id.
pub(super) const REVOKE_GRANT: &str = r#"
return revoke_grant(ARGV[2])
"#;

/// ARGV: prefix, user id, `1` when a member id follows (else every portal), member id.
/// The number of grants revoked.
pub(super) const REVOKE_PERSON: &str = r#"
local uid = ARGV[2]
local function matches(m) return ARGV[3] == '0' or m == ARGV[4] end
local count = 0
local gs = P .. 'user:' .. uid .. ':grants'
for _, id in ipairs(redis.call('SMEMBERS', gs)) do
  local m = redis.call('HGET', P .. 'grant:' .. id, 'member_id')
  if not m then
    redis.call('SREM', gs, id)
  elseif matches(m) then
    count = count + revoke_grant(id)
  end
end
local cs = P .. 'user:' .. uid .. ':codes'
for _, h in ipairs(redis.call('SMEMBERS', cs)) do
  local ck = P .. 'code:' .. h
  local m = redis.call('HGET', ck, 'member_id')
  if not m or matches(m) then
    redis.call('DEL', ck)
    redis.call('SREM', cs, h)
    redis.call('ZREM', P .. 'expiry', 'code:' .. h)
  end
end
local ps = P .. 'user:' .. uid .. ':people'
for _, m in ipairs(redis.call('SMEMBERS', ps)) do
  if matches(m) then
    redis.call('DEL', P .. 'person:' .. uid .. ':' .. m)
    redis.call('SREM', ps, m)
    redis.call('SREM', P .. 'people', uid .. ':' .. m)
  end
end
return count
"#;

/// ARGV: prefix. Five values per person: member id, user id, domain, last use, live
/// grants.
pub(super) const PEOPLE: &str = r#"
local out = {}
for _, e in ipairs(redis.call('SMEMBERS', P .. 'people')) do
  local uid, m = string.match(e, '^(%-?%d+):(.*)$')
  local v = redis.call('HMGET', P .. 'person:' .. e, 'domain', 'last_used_at')
  if uid and v[1] then
    local n = 0
    for _, id in ipairs(redis.call('SMEMBERS', P .. 'user:' .. uid .. ':grants')) do
      local g = redis.call('HMGET', P .. 'grant:' .. id, 'member_id', 'revoked')
      if g[1] == m and g[2] == '0' then n = n + 1 end
    end
    for _, x in ipairs({m, uid, v[1], v[2], tostring(n)}) do table.insert(out, x) end
  end
end
return out
"#;

/// ARGV: prefix, now, grant grace, client grace. Walks every grant and client: O(n),
/// run every few minutes.
pub(super) const PURGE: &str = r#"
local now = tonumber(ARGV[2])
local z = P .. 'pending'
for _, h in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', now)) do
  redis.call('DEL', P .. 'pending:' .. h)
end
redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
local e = P .. 'expiry'
for _, m in ipairs(redis.call('ZRANGEBYSCORE', e, '-inf', now)) do
  redis.call('DEL', P .. m)
end
redis.call('ZREMRANGEBYSCORE', e, '-inf', now)
local gs = P .. 'grants'
for _, id in ipairs(redis.call('SMEMBERS', gs)) do
  local gk = P .. 'grant:' .. id
  local ts = P .. 'grant_tokens:' .. id
  for _, h in ipairs(redis.call('SMEMBERS', ts)) do
    if redis.call('EXISTS', P .. 'token:' .. h) == 0 then redis.call('SREM', ts, h) end
  end
  local g = redis.call('HMGET', gk, 'revoked', 'created_at', 'user_id')
  if not g[1] then
    redis.call('SREM', gs, id)
    redis.call('DEL', ts)
  elseif (g[1] == '1' or tonumber(g[2]) <= now - tonumber(ARGV[3]))
      and redis.call('SCARD', ts) == 0 then
    redis.call('DEL', gk, ts)
    redis.call('SREM', gs, id)
    redis.call('SREM', P .. 'user:' .. g[3] .. ':grants', id)
  end
end
local cs = P .. 'clients'
for _, id in ipairs(redis.call('SMEMBERS', cs)) do
  local ck = P .. 'client:' .. id
  local c = redis.call('HMGET', ck, 'granted', 'created_at')
  if not c[2] then
    redis.call('SREM', cs, id)
  elseif not c[1] and tonumber(c[2]) <= now - tonumber(ARGV[4]) then
    redis.call('DEL', ck)
    redis.call('SREM', cs, id)
  end
end
return 0
"#;
