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
//! hashes); `user:UID:codes` (code hashes, expires with its last code);
//! `rotation:HEX` (hash, expires at the end of a spent refresh token's grace window: the
//! pair its first use issued, sealed).

/// Shared by every script.
pub(super) const LIB: &str = r#"
local P = ARGV[1]
local function fields(raw)
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  return f
end
-- Deletes a person (their Bitrix24 tokens) once they have no live grant and no code
-- waiting to be exchanged; 1 when deleted.
local function forget_if_signed_out(uid, m)
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'user:' .. uid .. ':grants')) do
    local g = redis.call('HMGET', P .. 'grant:' .. id, 'member_id', 'revoked')
    if g[1] == m and g[2] == '0' then return 0 end
  end
  for _, h in ipairs(redis.call('SMEMBERS', P .. 'user:' .. uid .. ':codes')) do
    if redis.call('HGET', P .. 'code:' .. h, 'member_id') == m then return 0 end
  end
  redis.call('DEL', P .. 'person:' .. uid .. ':' .. m)
  redis.call('SREM', P .. 'user:' .. uid .. ':people', m)
  redis.call('SREM', P .. 'people', uid .. ':' .. m)
  return 1
end
-- The token `h` when it is of `kind`, unexpired at `now`, and its grant and person are
-- live: the token's fields and the grant's raw field pairs; nil otherwise.
local function live_token(h, kind, now)
  local t = fields(redis.call('HGETALL', P .. 'token:' .. h))
  if t.kind ~= kind or tonumber(t.expires_at) <= tonumber(now) then return nil end
  local raw = redis.call('HGETALL', P .. 'grant:' .. t.grant_id)
  local g = fields(raw)
  if g.revoked ~= '0' then return nil end
  if redis.call('EXISTS', P .. 'person:' .. g.user_id .. ':' .. g.member_id) == 0 then
    return nil
  end
  return t, raw
end
-- Deletes one token of a grant, and its repeat window.
local function drop_token(ts, h)
  redis.call('DEL', P .. 'token:' .. h, P .. 'rotation:' .. h)
  redis.call('SREM', ts, h)
  redis.call('ZREM', P .. 'expiry', 'token:' .. h)
end
-- Revokes a grant and deletes its tokens; 1 when it was live. The person goes too when
-- this was their last live grant.
local function revoke_grant(id)
  local g = P .. 'grant:' .. id
  local live = 0
  if redis.call('HGET', g, 'revoked') == '0' then
    redis.call('HSET', g, 'revoked', '1')
    live = 1
  end
  local ts = P .. 'grant_tokens:' .. id
  for _, h in ipairs(redis.call('SMEMBERS', ts)) do drop_token(ts, h) end
  redis.call('DEL', ts)
  local who = redis.call('HMGET', g, 'user_id', 'member_id')
  if who[1] and who[2] then forget_if_signed_out(who[1], who[2]) end
  return live
end
-- Saves a token of a grant, expiring at `ms`.
local function put_token(h, grant_id, kind, expires_at, ms, parent)
  local k = P .. 'token:' .. h
  redis.call('DEL', k)
  redis.call('HSET', k, 'grant_id', grant_id, 'kind', kind, 'expires_at', expires_at,
    'used', '0', 'parent', parent)
  redis.call('PEXPIREAT', k, ms)
  if redis.call('EXISTS', k) == 1 then
    redis.call('SADD', P .. 'grant_tokens:' .. grant_id, h)
    redis.call('ZADD', P .. 'expiry', expires_at, 'token:' .. h)
  end
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
local t, raw = live_token(ARGV[2], 'access', ARGV[3])
if not t then return {} end
local out = {t.expires_at, t.used}
for _, v in ipairs(raw) do table.insert(out, v) end
return out
"#;

/// ARGV: prefix, token hex, now. The grant's field pairs when the refresh token is known,
/// unexpired, and its grant and person live (spent or not); otherwise empty.
pub(super) const REFRESH_GRANT: &str = r#"
local t, raw = live_token(ARGV[2], 'refresh', ARGV[3])
if not t then return {} end
return raw
"#;

/// ARGV: prefix, token hex, now, then the rotation: access hex, its expires_at and expiry
/// ms, refresh hex, its expires_at and expiry ms, grace, the window's expiry ms, the
/// sealed pair. `{unknown}`, `{reused, grant id}`, `{repeat, sealed pair,
/// access expires_at, grant pairs…}` or `{fresh, grant pairs…}`.
pub(super) const USE_REFRESH: &str = r#"
local h, now = ARGV[2], tonumber(ARGV[3])
local k = P .. 'token:' .. h
local t = fields(redis.call('HGETALL', k))
if t.kind ~= 'refresh' then return {'unknown'} end
local raw = redis.call('HGETALL', P .. 'grant:' .. t.grant_id)
local g = fields(raw)
if g.revoked ~= '0' then return {'unknown'} end
if redis.call('EXISTS', P .. 'person:' .. g.user_id .. ':' .. g.member_id) == 0 then
  return {'unknown'}
end
local function with_grant(out)
  for _, v in ipairs(raw) do table.insert(out, v) end
  return out
end
if t.used == '1' then
  local r = fields(redis.call('HGETALL', P .. 'rotation:' .. h))
  if r.pair and tonumber(r.expires_at) >= now then
    local n = redis.call('HMGET', P .. 'token:' .. r.next, 'used', 'expires_at')
    if n[1] == '0' and tonumber(n[2]) > now then
      return with_grant({'repeat', r.pair, r.access_expires_at})
    end
    return {'unknown'}
  end
  revoke_grant(t.grant_id)
  return {'reused', t.grant_id}
end
if tonumber(t.expires_at) <= now then return {'unknown'} end
-- Keep only this spent token and the access tokens of the last two generations.
local ts = P .. 'grant_tokens:' .. t.grant_id
local parent = t.parent or ''
for _, m in ipairs(redis.call('SMEMBERS', ts)) do
  if m ~= h then
    local o = redis.call('HMGET', P .. 'token:' .. m, 'kind', 'used', 'parent')
    if not o[1] or (o[1] == 'refresh' and o[2] == '1')
        or (o[1] == 'access' and (o[3] or '') ~= parent) then
      drop_token(ts, m)
    end
  end
end
redis.call('HSET', k, 'used', '1')
put_token(ARGV[4], t.grant_id, 'access', ARGV[5], ARGV[6], h)
put_token(ARGV[7], t.grant_id, 'refresh', ARGV[8], ARGV[9], h)
if tonumber(ARGV[10]) > 0 then
  local rk = P .. 'rotation:' .. h
  redis.call('HSET', rk, 'pair', ARGV[12], 'next', ARGV[7], 'access_expires_at', ARGV[5],
    'expires_at', tostring(now + tonumber(ARGV[10])))
  redis.call('PEXPIREAT', rk, ARGV[11])
end
return with_grant({'fresh'})
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

/// ARGV: prefix. Five values per person signed in (at least one live grant): member
/// id, user id, domain, last use, live grants.
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
    if n > 0 then
      for _, x in ipairs({m, uid, v[1], v[2], tostring(n)}) do table.insert(out, x) end
    end
  end
end
return out
"#;

/// ARGV: prefix, now, grant grace, client grace, settling time (see `sqlite.rs`). Walks
/// every grant, person and client: O(n), run every few minutes.
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
for _, entry in ipairs(redis.call('SMEMBERS', P .. 'people')) do
  local uid, m = string.match(entry, '^(%-?%d+):(.*)$')
  local last = redis.call('HGET', P .. 'person:' .. entry, 'last_used_at')
  if uid and last and tonumber(last) <= now - tonumber(ARGV[5]) then
    forget_if_signed_out(uid, m)
  end
end
-- Clients with a sign-in in progress stay, however old.
local busy = {}
for _, h in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  local c = redis.call('HGET', P .. 'pending:' .. h, 'client_id')
  if c then busy[c] = true end
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', e, now, '+inf')) do
  if string.sub(m, 1, 5) == 'code:' then
    local c = redis.call('HGET', P .. m, 'client_id')
    if c then busy[c] = true end
  end
end
local cs = P .. 'clients'
for _, id in ipairs(redis.call('SMEMBERS', cs)) do
  local ck = P .. 'client:' .. id
  local c = redis.call('HMGET', ck, 'granted', 'created_at')
  if not c[2] then
    redis.call('SREM', cs, id)
  elseif not c[1] and not busy[id] and tonumber(c[2]) <= now - tonumber(ARGV[4]) then
    redis.call('DEL', ck)
    redis.call('SREM', cs, id)
  end
end
return 0
"#;
