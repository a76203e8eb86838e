//! [`RedisStore`]: the sign-in store in Redis, shared by several replicas of the server.
//!
//! Long for the same reason as `sqlite.rs`: the whole `Store` trait, one short method per
//! call; the scripts and the key layout are in `redis/lua.rs`.
//!
//! Same semantics as [`super::SqliteStore`], call by call. Pending authorizations, codes
//! and tokens expire in Redis itself at their `expires_at` (`PEXPIREAT`), so nothing
//! outlives its use even if no replica purges; every read still compares `expires_at`
//! with the caller's `now`. Each read-then-write is one Lua script, atomic in Redis, so a
//! code or a refresh token works once across every replica. Nothing is cached: a
//! revocation by any process is seen by the next call. The Bitrix24 tokens are sealed with
//! the [`StoreKey`] before they leave the process, exactly as in SQLite.
//!
//! The tokio [`ConnectionManager`] reconnects by itself when Redis comes back; every call
//! is bounded by [`CALL_TIMEOUT`], so while Redis is down calls fail with
//! `StoreError::Unavailable` instead of waiting.

pub(crate) mod lock;
mod lua;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{RedisError, Script};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::{
    AuthCode, BitrixTokens, CLIENT_GRACE, ClientRecord, Grant, IssuedToken, Limits, PendingAuth,
    Person, PersonSummary, RefreshUse, Rotation, SIGN_IN_SETTLING, Store, StoreError, StoreKey,
    TokenHash, TokenKind, rotation_aad, rotation_pair, rotation_text,
};

/// The longest a store call waits for Redis, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The prefix of every key, so the store can share a Redis database with other data.
pub const DEFAULT_PREFIX: &str = "b24mcp:";
/// As in `sqlite.rs`.
const TOUCH_GRANULARITY: i64 = 60;
const GRANT_GRACE: i64 = 3600;
const KEY_CHECK: &str = "bitrix24-task-results-mcp store key check";

/// A `redis://` or `rediss://` address. It may hold a password, so `Debug` and
/// [`RedisUrl::shown`] leave out the user part.
#[derive(Clone)]
pub struct RedisUrl {
    url: SecretString,
    shown: String,
}

impl RedisUrl {
    /// Checks the shape: `redis://[USER:PASSWORD@]HOST[:PORT][/DB]` or `rediss://…`.
    /// Errors never repeat the address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            "MCP_STORE is not a Redis address like redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
                .to_string()
        };
        let url = url::Url::parse(text.trim()).map_err(|_| bad())?;
        if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none_or(str::is_empty) {
            return Err(bad());
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err("MCP_STORE: the Redis database (the path) must be a number, e.g. redis://HOST:6379/0".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad());
        }
        if let Some(password) = url.password() {
            crate::redact::register(password);
        }
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let shown = format!(
            "{}://{}{port}/{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            if db.is_empty() { "0" } else { db }
        );
        Ok(Self {
            url: SecretString::from(text.trim()),
            shown,
        })
    }

    /// The address without user or password, for logs.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The address itself, password included, for the Redis client only.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// `rediss://`: TLS.
    pub fn is_tls(&self) -> bool {
        self.shown.starts_with("rediss:")
    }
}

impl PartialEq for RedisUrl {
    fn eq(&self, other: &Self) -> bool {
        self.url.expose_secret() == other.url.expose_secret()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.shown)
    }
}

/// What [`RedisStore::open_with`] may change: the key prefix and the bounds.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub prefix: String,
    pub limits: Limits,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.into(),
            limits: Limits::default(),
        }
    }
}

/// The store in Redis. Cheap to clone (one shared, multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    key: StoreKey,
    options: RedisOptions,
    shown: String,
    scripts: Scripts,
}

struct Scripts {
    put_client: Script,
    put_pending: Script,
    take: Script,
    put_code: Script,
    update_if_exists: Script,
    touch: Script,
    put_grant: Script,
    put_token: Script,
    token: Script,
    refresh_grant: Script,
    use_refresh: Script,
    revoke_token: Script,
    revoke_grant: Script,
    revoke_person: Script,
    people: Script,
    purge: Script,
}

impl Scripts {
    fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{}\n{body}", lua::LIB));
        Self {
            put_client: s(lua::PUT_CLIENT),
            put_pending: s(lua::PUT_PENDING),
            take: s(lua::TAKE),
            put_code: s(lua::PUT_CODE),
            update_if_exists: s(lua::UPDATE_IF_EXISTS),
            touch: s(lua::TOUCH),
            put_grant: s(lua::PUT_GRANT),
            put_token: s(lua::PUT_TOKEN),
            token: s(lua::TOKEN),
            refresh_grant: s(lua::REFRESH_GRANT),
            use_refresh: s(lua::USE_REFRESH),
            revoke_token: s(lua::REVOKE_TOKEN),
            revoke_grant: s(lua::REVOKE_GRANT),
            revoke_person: s(lua::REVOKE_PERSON),
            people: s(lua::PEOPLE),
            purge: s(lua::PURGE),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.inner.shown)
            .field("prefix", &self.inner.options.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` and checks that `key` is the key the store was created with
    /// (`WrongKey` otherwise; the first replica to start records it). `Unavailable` when
    /// Redis cannot be reached within a few seconds.
    pub async fn open(url: &RedisUrl, key: StoreKey) -> Result<Self, StoreError> {
        Self::open_with(url, key, RedisOptions::default()).await
    }

    /// [`RedisStore::open`] with another prefix or bounds (tests use both).
    pub async fn open_with(
        url: &RedisUrl,
        key: StoreKey,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        if url.is_tls() {
            // redis-rs builds its rustls configuration from the process default.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = ::redis::Client::open(url.url.expose_secret()).map_err(|_| {
            StoreError::Unavailable(format!("{} is not a usable Redis address", url.shown))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            CALL_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(redis_error)?;
        let store = Self {
            inner: Arc::new(Inner {
                conn,
                key,
                options,
                shown: url.shown.clone(),
                scripts: Scripts::new(),
            }),
        };
        store.check_key().await?;
        Ok(store)
    }

    /// The connection, for other shared state on the same Redis (it reconnects by itself).
    pub fn connection(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.options.prefix
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.inner.options.prefix)
    }

    async fn check_key(&self) -> Result<(), StoreError> {
        let name = self.key("meta:key_check");
        let sealed = self.inner.key.seal(KEY_CHECK, b"key_check")?;
        let mut set = ::redis::cmd("SET");
        set.arg(&name).arg(sealed).arg("NX");
        let _: Option<String> = self.query(set).await?;
        let stored: Option<Vec<u8>> = self.query(::redis::cmd("GET").arg(&name).clone()).await?;
        let stored = stored
            .ok_or_else(|| StoreError::Unavailable("the store's key check is missing".into()))?;
        let plain = self.inner.key.open(&stored, b"key_check")?;
        if plain.expose_secret() != KEY_CHECK {
            return Err(StoreError::WrongKey);
        }
        Ok(())
    }

    /// One command that is safe to repeat (a read, or `SET NX`): retried once on a
    /// connection that turns out dead (see [`once_more_if_dropped`]).
    async fn query<T: ::redis::FromRedisValue>(&self, cmd: ::redis::Cmd) -> Result<T, StoreError> {
        let conn = self.inner.conn.clone();
        bounded(once_more_if_dropped(|| {
            let (cmd, mut conn) = (cmd.clone(), conn.clone());
            async move { cmd.query_async(&mut conn).await }
        }))
        .await
    }

    /// Runs `script` with the prefix as `ARGV[1]`, then `args`. Never repeated: a script
    /// that writes may have run before its connection failed.
    async fn run<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: Args,
    ) -> Result<T, StoreError> {
        let invocation = self.invocation(script, keys, args);
        let mut conn = self.inner.conn.clone();
        bounded(async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// [`RedisStore::run`] for a script that only reads: retried once like `query`.
    async fn run_read<T: ::redis::FromRedisValue>(
        &self,
        script: &Script,
        args: Args,
    ) -> Result<T, StoreError> {
        let invocation = self.invocation(script, &[], args);
        let (invocation, conn) = (&invocation, self.inner.conn.clone());
        bounded(once_more_if_dropped(|| {
            let mut conn = conn.clone();
            async move { invocation.invoke_async(&mut conn).await }
        }))
        .await
    }

    fn invocation<'a>(
        &self,
        script: &'a Script,
        keys: &[String],
        args: Args,
    ) -> ::redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(&self.inner.options.prefix);
        for arg in args.0 {
            invocation.arg(arg);
        }
        invocation
    }
}

/// After Redis restarts, the first command on the old connection fails (broken pipe)
/// and the manager reconnects; a read may simply be asked again, so the first request
/// after an outage does not fail for nothing.
async fn once_more_if_dropped<T, F, Fut>(call: F) -> Result<T, RedisError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RedisError>>,
{
    match call().await {
        Err(e) if e.is_connection_dropped() || e.is_unrecoverable_error() => call().await,
        other => other,
    }
}

async fn bounded<T>(call: impl Future<Output = Result<T, RedisError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| timed_out())?
        .map_err(redis_error)
}

fn timed_out() -> StoreError {
    crate::metrics::redis_error(crate::metrics::RedisPart::Store);
    StoreError::Unavailable("Redis did not answer in time".into())
}

/// A Redis failure in words that hold no value: the kind of failure, or the server's
/// error code (`WRONGPASS`, `NOSCRIPT`, …), never its message.
fn redis_error(e: RedisError) -> StoreError {
    crate::metrics::redis_error(crate::metrics::RedisPart::Store);
    let why = if e.is_timeout() {
        "Redis did not answer in time".to_string()
    } else if e.is_io_error() && e.to_string().contains("certificate") {
        // rustls's words for a refused certificate; the text itself is not repeated.
        "Redis's TLS certificate is not trusted or not for this host name (for a private CA, \
         set SSL_CERT_FILE to its certificate)"
            .to_string()
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        "Redis is unreachable".to_string()
    } else if e.kind() == ::redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
    {
        "Redis refused the credentials in MCP_STORE".to_string()
    } else if let Some(code) = e.code() {
        format!("Redis refused a call ({code})")
    } else {
        format!("Redis failed ({:?})", e.kind())
    };
    StoreError::Unavailable(why)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("a stored {what} is corrupt"))
}

fn hex(hash: &TokenHash) -> String {
    hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix seconds to the milliseconds `PEXPIREAT` takes.
fn millis(at: i64) -> i64 {
    at.saturating_mul(1000)
}

/// Script arguments after the prefix.
#[derive(Default)]
struct Args(Vec<Vec<u8>>);

impl Args {
    fn new() -> Self {
        Self::default()
    }

    fn arg(mut self, value: impl ToString) -> Self {
        self.0.push(value.to_string().into_bytes());
        self
    }

    fn bytes(mut self, value: Vec<u8>) -> Self {
        self.0.push(value);
        self
    }

    /// A hash field; left out when `None`.
    fn field(self, name: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.arg(name).arg(v),
            None => self,
        }
    }

    fn field_bytes(self, name: &str, value: Vec<u8>) -> Self {
        self.arg(name).bytes(value)
    }
}

/// A hash read back as field pairs.
struct Fields(HashMap<String, Vec<u8>>);

impl Fields {
    fn from_pairs(raw: Vec<Vec<u8>>, what: &str) -> Result<Self, StoreError> {
        if !raw.len().is_multiple_of(2) {
            return Err(corrupt(what));
        }
        let mut map = HashMap::with_capacity(raw.len() / 2);
        let mut it = raw.into_iter();
        while let (Some(name), Some(value)) = (it.next(), it.next()) {
            let name = String::from_utf8(name).map_err(|_| corrupt(what))?;
            map.insert(name, value);
        }
        Ok(Self(map))
    }

    fn opt(&self, name: &str, what: &str) -> Result<Option<String>, StoreError> {
        self.0
            .get(name)
            .map(|v| String::from_utf8(v.clone()).map_err(|_| corrupt(what)))
            .transpose()
    }

    fn text(&self, name: &str, what: &str) -> Result<String, StoreError> {
        self.opt(name, what)?.ok_or_else(|| corrupt(what))
    }

    fn int(&self, name: &str, what: &str) -> Result<i64, StoreError> {
        self.text(name, what)?.parse().map_err(|_| corrupt(what))
    }

    fn flag(&self, name: &str, what: &str) -> Result<bool, StoreError> {
        Ok(self.int(name, what)? != 0)
    }

    fn bytes(&self, name: &str, what: &str) -> Result<&[u8], StoreError> {
        self.0
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| corrupt(what))
    }
}

/// Associated data of a sealed token, the same as SQLite's.
fn aad(field: &str, member_id: &str, user_id: i64) -> Vec<u8> {
    format!("{field}\0{user_id}\0{member_id}").into_bytes()
}

fn grant_from(f: &Fields) -> Result<Grant, StoreError> {
    let w = "grant";
    Ok(Grant {
        id: f.text("id", w)?,
        client_id: f.text("client_id", w)?,
        member_id: f.text("member_id", w)?,
        user_id: f.int("user_id", w)?,
        resource: f.text("resource", w)?,
        scope: f.opt("scope", w)?,
        created_at: f.int("created_at", w)?,
        revoked: f.flag("revoked", w)?,
    })
}

fn kind_name(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::Access => "access",
        TokenKind::Refresh => "refresh",
    }
}

fn flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

/// The sealed-token fields of a person, for `put_person` and `set_person_tokens`.
fn token_fields(
    key: &StoreKey,
    args: Args,
    member_id: &str,
    user_id: i64,
    t: &BitrixTokens,
) -> Result<Args, StoreError> {
    let access = key.seal(t.access.expose_secret(), &aad("access", member_id, user_id))?;
    let refresh = key.seal(
        t.refresh.expose_secret(),
        &aad("refresh", member_id, user_id),
    )?;
    Ok(args
        .field_bytes("access", access)
        .field_bytes("refresh", refresh)
        .field("token_expires_at", Some(t.expires_at))
        .field("server_endpoint", t.server_endpoint.as_ref())
        .field("client_endpoint", t.client_endpoint.as_ref())
        .field("scope", t.scope.as_ref()))
}

/// The optional token fields that are `None`, to delete on an update.
fn absent_token_fields(t: &BitrixTokens) -> Vec<&'static str> {
    [
        ("server_endpoint", t.server_endpoint.is_none()),
        ("client_endpoint", t.client_endpoint.is_none()),
        ("scope", t.scope.is_none()),
    ]
    .into_iter()
    .filter_map(|(name, absent)| absent.then_some(name))
    .collect()
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(::redis::cmd("PING")).await?;
        Ok(())
    }

    async fn put_client(&self, c: ClientRecord) -> Result<(), StoreError> {
        let uris = serde_json::to_string(&c.redirect_uris).map_err(|_| {
            StoreError::Unavailable("a client's redirect URIs do not encode".into())
        })?;
        let mut args = Args::new()
            .arg(&c.client_id)
            .arg(self.inner.options.limits.clients)
            .field("uris", Some(uris))
            .field("created_at", Some(c.created_at))
            .field("name", c.client_name.as_ref());
        if let Some(secret) = &c.secret_hash {
            args = args.field_bytes("secret", secret.as_bytes().to_vec());
        }
        let done: String = self.run(&self.inner.scripts.put_client, &[], args).await?;
        if done == "full" {
            return Err(StoreError::Full);
        }
        Ok(())
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let raw: Vec<Vec<u8>> = self
            .query(
                ::redis::cmd("HGETALL")
                    .arg(self.key(&format!("client:{client_id}")))
                    .clone(),
            )
            .await?;
        if raw.is_empty() {
            return Ok(None);
        }
        let w = "client";
        let f = Fields::from_pairs(raw, w)?;
        let secret_hash = match f.0.get("secret") {
            None => None,
            Some(bytes) => Some(TokenHash::from_bytes(
                bytes.as_slice().try_into().map_err(|_| corrupt(w))?,
            )),
        };
        let redirect_uris = serde_json::from_str(&f.text("uris", w)?).map_err(|_| corrupt(w))?;
        Ok(Some(ClientRecord {
            client_id: client_id.to_owned(),
            client_name: f.opt("name", w)?,
            redirect_uris,
            created_at: f.int("created_at", w)?,
            secret_hash,
        }))
    }

    async fn put_pending(&self, p: PendingAuth, now: i64) -> Result<(), StoreError> {
        let args = Args::new()
            .arg(hex(&p.state))
            .arg(now)
            .arg(self.inner.options.limits.pending)
            .arg(p.expires_at)
            .arg(millis(p.expires_at))
            .field("client_id", Some(&p.client_id))
            .field("redirect_uri", Some(&p.redirect_uri))
            .field("code_challenge", Some(&p.code_challenge))
            .field("client_state", p.client_state.as_ref())
            .field("resource", Some(&p.resource))
            .field("scope", p.scope.as_ref())
            .field("expires_at", Some(p.expires_at));
        let done: String = self.run(&self.inner.scripts.put_pending, &[], args).await?;
        if done == "full" {
            return Err(StoreError::Full);
        }
        Ok(())
    }

    async fn take_pending(
        &self,
        state: &TokenHash,
        now: i64,
    ) -> Result<Option<PendingAuth>, StoreError> {
        let args = Args::new().arg("pending").arg(hex(state));
        let raw: Vec<Vec<u8>> = self.run(&self.inner.scripts.take, &[], args).await?;
        if raw.is_empty() {
            return Ok(None);
        }
        let w = "pending authorization";
        let f = Fields::from_pairs(raw, w)?;
        let p = PendingAuth {
            state: *state,
            client_id: f.text("client_id", w)?,
            redirect_uri: f.text("redirect_uri", w)?,
            code_challenge: f.text("code_challenge", w)?,
            client_state: f.opt("client_state", w)?,
            resource: f.text("resource", w)?,
            scope: f.opt("scope", w)?,
            expires_at: f.int("expires_at", w)?,
        };
        Ok((p.expires_at > now).then_some(p))
    }

    async fn put_code(&self, c: AuthCode) -> Result<(), StoreError> {
        let args = Args::new()
            .arg(hex(&c.code))
            .arg(c.expires_at)
            .arg(millis(c.expires_at))
            .arg(c.user_id)
            .field("client_id", Some(&c.client_id))
            .field("redirect_uri", Some(&c.redirect_uri))
            .field("code_challenge", Some(&c.code_challenge))
            .field("resource", Some(&c.resource))
            .field("scope", c.scope.as_ref())
            .field("user_id", Some(c.user_id))
            .field("member_id", Some(&c.member_id))
            .field("expires_at", Some(c.expires_at));
        let _: String = self.run(&self.inner.scripts.put_code, &[], args).await?;
        Ok(())
    }

    async fn take_code(&self, code: &TokenHash, now: i64) -> Result<Option<AuthCode>, StoreError> {
        let args = Args::new().arg("code").arg(hex(code));
        let raw: Vec<Vec<u8>> = self.run(&self.inner.scripts.take, &[], args).await?;
        if raw.is_empty() {
            return Ok(None);
        }
        let w = "code";
        let f = Fields::from_pairs(raw, w)?;
        let c = AuthCode {
            code: *code,
            client_id: f.text("client_id", w)?,
            redirect_uri: f.text("redirect_uri", w)?,
            code_challenge: f.text("code_challenge", w)?,
            resource: f.text("resource", w)?,
            scope: f.opt("scope", w)?,
            user_id: f.int("user_id", w)?,
            member_id: f.text("member_id", w)?,
            expires_at: f.int("expires_at", w)?,
        };
        Ok((c.expires_at > now).then_some(c))
    }

    async fn put_person(&self, p: Person) -> Result<(), StoreError> {
        let key = self.key(&format!("person:{}:{}", p.user_id, p.member_id));
        let absent = absent_token_fields(&p.tokens);
        let fields = token_fields(
            &self.inner.key,
            Args::new()
                .field("domain", Some(&p.domain))
                .field("last_used_at", Some(p.last_used_at)),
            &p.member_id,
            p.user_id,
            &p.tokens,
        )?;
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        if !absent.is_empty() {
            pipe.hdel(&key, &absent).ignore();
        }
        pipe.hset_multiple(&key, &pairs(fields.0)).ignore();
        pipe.hset_nx(&key, "created_at", p.created_at).ignore();
        pipe.sadd(self.key("people"), format!("{}:{}", p.user_id, p.member_id))
            .ignore();
        pipe.sadd(
            self.key(&format!("user:{}:people", p.user_id)),
            &p.member_id,
        )
        .ignore();
        let mut conn = self.inner.conn.clone();
        bounded(async move { pipe.query_async::<()>(&mut conn).await }).await
    }

    async fn person(&self, member_id: &str, user_id: i64) -> Result<Option<Person>, StoreError> {
        let raw: Vec<Vec<u8>> = self
            .query(
                ::redis::cmd("HGETALL")
                    .arg(self.key(&format!("person:{user_id}:{member_id}")))
                    .clone(),
            )
            .await?;
        if raw.is_empty() {
            return Ok(None);
        }
        let w = "person";
        let f = Fields::from_pairs(raw, w)?;
        let key = &self.inner.key;
        let tokens = BitrixTokens {
            access: key.open(f.bytes("access", w)?, &aad("access", member_id, user_id))?,
            refresh: key.open(f.bytes("refresh", w)?, &aad("refresh", member_id, user_id))?,
            expires_at: f.int("token_expires_at", w)?,
            server_endpoint: f.opt("server_endpoint", w)?,
            client_endpoint: f.opt("client_endpoint", w)?,
            scope: f.opt("scope", w)?,
        };
        Ok(Some(Person {
            member_id: member_id.to_owned(),
            user_id,
            domain: f.text("domain", w)?,
            tokens,
            last_used_at: f.int("last_used_at", w)?,
            created_at: f.int("created_at", w)?,
        }))
    }

    async fn set_person_tokens(
        &self,
        member_id: &str,
        user_id: i64,
        t: BitrixTokens,
    ) -> Result<(), StoreError> {
        let absent = absent_token_fields(&t);
        let mut args = Args::new().arg(absent.len());
        for name in absent {
            args = args.arg(name);
        }
        let args = token_fields(&self.inner.key, args, member_id, user_id, &t)?;
        let person = self.key(&format!("person:{user_id}:{member_id}"));
        let _: i64 = self
            .run(&self.inner.scripts.update_if_exists, &[person], args)
            .await?;
        Ok(())
    }

    async fn touch_person(
        &self,
        member_id: &str,
        user_id: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let person = self.key(&format!("person:{user_id}:{member_id}"));
        let args = Args::new().arg(now).arg(TOUCH_GRANULARITY);
        let _: i64 = self.run(&self.inner.scripts.touch, &[person], args).await?;
        Ok(())
    }

    async fn put_grant(&self, g: Grant) -> Result<(), StoreError> {
        let args = Args::new()
            .arg(&g.id)
            .arg(&g.client_id)
            .arg(g.user_id)
            .field("id", Some(&g.id))
            .field("client_id", Some(&g.client_id))
            .field("member_id", Some(&g.member_id))
            .field("user_id", Some(g.user_id))
            .field("resource", Some(&g.resource))
            .field("scope", g.scope.as_ref())
            .field("created_at", Some(g.created_at))
            .field("revoked", Some(flag(g.revoked)));
        let _: String = self.run(&self.inner.scripts.put_grant, &[], args).await?;
        Ok(())
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let raw: Vec<Vec<u8>> = self
            .query(
                ::redis::cmd("HGETALL")
                    .arg(self.key(&format!("grant:{id}")))
                    .clone(),
            )
            .await?;
        if raw.is_empty() {
            return Ok(None);
        }
        grant_from(&Fields::from_pairs(raw, "grant")?).map(Some)
    }

    async fn put_token(&self, t: IssuedToken) -> Result<(), StoreError> {
        let args = Args::new()
            .arg(hex(&t.hash))
            .arg(&t.grant_id)
            .arg(t.expires_at)
            .arg(millis(t.expires_at))
            .field("grant_id", Some(&t.grant_id))
            .field("kind", Some(kind_name(t.kind)))
            .field("expires_at", Some(t.expires_at))
            .field("used", Some(flag(t.used)));
        let _: String = self.run(&self.inner.scripts.put_token, &[], args).await?;
        Ok(())
    }

    async fn token(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<(IssuedToken, Grant)>, StoreError> {
        let args = Args::new().arg(hex(hash)).arg(now);
        let mut raw: Vec<Vec<u8>> = self.run_read(&self.inner.scripts.token, args).await?;
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() < 2 {
            return Err(corrupt("token"));
        }
        let grant_fields = raw.split_off(2);
        let grant = grant_from(&Fields::from_pairs(grant_fields, "grant")?)?;
        let number = |v: &[u8]| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| corrupt("token"))
        };
        let token = IssuedToken {
            hash: *hash,
            grant_id: grant.id.clone(),
            kind: TokenKind::Access,
            expires_at: number(&raw[0])?,
            used: number(&raw[1])? != 0,
        };
        Ok(Some((token, grant)))
    }

    async fn refresh_token_grant(
        &self,
        hash: &TokenHash,
        now: i64,
    ) -> Result<Option<Grant>, StoreError> {
        let args = Args::new().arg(hex(hash)).arg(now);
        let raw: Vec<Vec<u8>> = self
            .run_read(&self.inner.scripts.refresh_grant, args)
            .await?;
        if raw.is_empty() {
            return Ok(None);
        }
        grant_from(&Fields::from_pairs(raw, "grant")?).map(Some)
    }

    async fn use_refresh(
        &self,
        hash: &TokenHash,
        now: i64,
        next: Rotation,
    ) -> Result<RefreshUse, StoreError> {
        let sealed = self
            .inner
            .key
            .seal(&rotation_text(&next), &rotation_aad(hash))?;
        let access = TokenHash::of(next.access.expose_secret());
        let refresh = TokenHash::of(next.refresh.expose_secret());
        let args = Args::new()
            .arg(hex(hash))
            .arg(now)
            .arg(hex(&access))
            .arg(next.access_expires_at)
            .arg(millis(next.access_expires_at))
            .arg(hex(&refresh))
            .arg(next.refresh_expires_at)
            .arg(millis(next.refresh_expires_at))
            .arg(next.grace.max(0))
            // The window includes its last second, as in SQLite.
            .arg(millis(now.saturating_add(next.grace).saturating_add(1)))
            .bytes(sealed);
        let mut raw: Vec<Vec<u8>> = self.run(&self.inner.scripts.use_refresh, &[], args).await?;
        let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| corrupt("token"));
        match raw.first().map(Vec::as_slice) {
            Some(b"unknown") => Ok(RefreshUse::Unknown),
            Some(b"reused") if raw.len() == 2 => Ok(RefreshUse::Reused {
                grant_id: text(raw.swap_remove(1))?,
            }),
            Some(b"fresh") => {
                let grant_fields = raw.split_off(1);
                Ok(RefreshUse::Fresh(grant_from(&Fields::from_pairs(
                    grant_fields,
                    "grant",
                )?)?))
            }
            Some(b"repeat") if raw.len() >= 3 => {
                let grant_fields = raw.split_off(3);
                let grant = grant_from(&Fields::from_pairs(grant_fields, "grant")?)?;
                let access_expires_at = text(raw.swap_remove(2))?
                    .parse()
                    .map_err(|_| corrupt("token"))?;
                let plain = self.inner.key.open(&raw[1], &rotation_aad(hash))?;
                let pair = rotation_pair(&plain, access_expires_at)?;
                Ok(RefreshUse::Repeat(grant, pair))
            }
            _ => Err(corrupt("token")),
        }
    }

    async fn revoke_token(&self, hash: &TokenHash) -> Result<(), StoreError> {
        let args = Args::new().arg(hex(hash));
        let _: i64 = self
            .run(&self.inner.scripts.revoke_token, &[], args)
            .await?;
        Ok(())
    }

    async fn revoke_grant(&self, id: &str) -> Result<(), StoreError> {
        let args = Args::new().arg(id);
        let _: i64 = self
            .run(&self.inner.scripts.revoke_grant, &[], args)
            .await?;
        Ok(())
    }

    async fn revoke_person(
        &self,
        member_id: Option<&str>,
        user_id: i64,
    ) -> Result<u32, StoreError> {
        let args = Args::new()
            .arg(user_id)
            .arg(if member_id.is_some() { "1" } else { "0" })
            .arg(member_id.unwrap_or_default());
        let revoked: i64 = self
            .run(&self.inner.scripts.revoke_person, &[], args)
            .await?;
        Ok(u32::try_from(revoked).unwrap_or(u32::MAX))
    }

    async fn people(&self) -> Result<Vec<PersonSummary>, StoreError> {
        let raw: Vec<Vec<u8>> = self
            .run_read(&self.inner.scripts.people, Args::new())
            .await?;
        if !raw.len().is_multiple_of(5) {
            return Err(corrupt("person"));
        }
        let text = |v: &[u8]| String::from_utf8(v.to_vec()).map_err(|_| corrupt("person"));
        let number = |v: &[u8]| -> Result<i64, StoreError> {
            text(v)?.parse().map_err(|_| corrupt("person"))
        };
        let mut people = raw
            .chunks(5)
            .map(|c| {
                Ok(PersonSummary {
                    member_id: text(&c[0])?,
                    user_id: number(&c[1])?,
                    domain: text(&c[2])?,
                    last_used_at: number(&c[3])?,
                    grants: u32::try_from(number(&c[4])?).unwrap_or(u32::MAX),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        people.sort_by(|a, b| {
            b.last_used_at
                .cmp(&a.last_used_at)
                .then_with(|| a.member_id.cmp(&b.member_id))
                .then_with(|| a.user_id.cmp(&b.user_id))
        });
        Ok(people)
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        expires_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let invocation = lock::take(&self.key(&format!("lock:{name}")), holder, expires_at_ms);
        let mut conn = self.inner.conn.clone();
        let taken: i64 = bounded(async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(taken == 1)
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let invocation = lock::free(&self.key(&format!("lock:{name}")), holder);
        let mut conn = self.inner.conn.clone();
        let _: i64 = bounded(async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(())
    }

    async fn purge_expired(&self, now: i64) -> Result<(), StoreError> {
        let args = Args::new()
            .arg(now)
            .arg(GRANT_GRACE)
            .arg(CLIENT_GRACE)
            .arg(SIGN_IN_SETTLING);
        let _: i64 = self.run(&self.inner.scripts.purge, &[], args).await?;
        Ok(())
    }
}

/// Flat `name, value` arguments as the pairs `HSET` takes.
fn pairs(flat: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut it = flat.into_iter();
    let mut out = Vec::new();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        out.push((name, value));
    }
    out
}
