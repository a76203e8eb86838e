//! The configured OAuth identity's pair in Redis, shared by replicas (issue 13).
//!
//! Without sign-in every replica runs as one identity, and Bitrix24 rotates its refresh
//! token on every refresh: a second replica spending the same token would be refused and
//! the identity would be dead. The replicas therefore keep the pair here, sealed with the
//! store key (never in clear), take turns through the store's one Redis lock
//! (`crate::store::redis::lock`), and adopt the pair the holder published: a [`Holder`]
//! of the token engine (`crate::identity`).

use redis::aio::ConnectionManager;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bitrix::BoxFuture;
use crate::identity::{Holder, HolderError, Pair};
use crate::replicas::connection::{self, ROUND_TRIP_TIMEOUT};
use crate::store::redis::lock;
use crate::store::{RedisUrl, StoreKey};

/// Prefix of the identity keys; a hash of the portal's origin and the client id follows.
pub const KEY_PREFIX: &str = "b24mcp:identity:";

/// One identity's shared pair and refresh lock in Redis.
pub struct RedisPair {
    conn: ConnectionManager,
    key: StoreKey,
    /// `b24mcp:identity:<hash>`: the sealed pair; `…:lock` is the refresh lock.
    name: String,
    /// The URL without its credentials.
    shown: String,
}

impl std::fmt::Debug for RedisPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisPair({}, {})", self.shown, self.name)
    }
}

/// The key of the identity `client_id` on the portal `origin`: hashed, so the key names
/// neither.
pub fn identity_key(origin: &str, client_id: &str) -> String {
    let digest = Sha256::digest(format!("{origin}\n{client_id}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

impl RedisPair {
    /// Connects to `url` for the identity `client_id` on `origin`; fails when Redis
    /// does not answer, so that start-up can say so.
    pub async fn connect(
        url: &RedisUrl,
        key: StoreKey,
        origin: &str,
        client_id: &str,
    ) -> Result<Self, String> {
        let shown = url.shown().to_string();
        let (conn, _) = connection::connect(url.expose())
            .await
            .map_err(|e| format!("{shown}: {e}"))?;
        Ok(RedisPair {
            conn,
            key,
            name: identity_key(origin, client_id),
            shown,
        })
    }

    fn lock_name(&self) -> String {
        format!("{}:lock", self.name)
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{}: {}", self.shown, failure(&e))),
            Err(_) => Err(format!("{} did not answer in time", self.shown)),
        }
    }

    async fn get(&self) -> Result<Option<Pair>, String> {
        let mut conn = self.conn.clone();
        let sealed: Option<Vec<u8>> = self
            .bounded(redis::cmd("GET").arg(&self.name).query_async(&mut conn))
            .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        // The key name is the associated data: a pair copied under another identity's
        // key does not open.
        let plain = self
            .key
            .open(&sealed, self.name.as_bytes())
            .map_err(|e| format!("the shared OAuth pair cannot be read ({e})"))?;
        let value: Value = serde_json::from_str(plain.expose_secret())
            .map_err(|_| "the shared OAuth pair is not in this server's format".to_string())?;
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
        match (text("access_token"), text("refresh_token")) {
            (Some(access), Some(refresh)) => Ok(Some(Pair {
                access: SecretString::from(access),
                refresh: SecretString::from(refresh),
                expires_at: value.get("expires").and_then(Value::as_i64),
                server_endpoint: text("server_endpoint"),
                client_endpoint: None,
                scope: None,
            })),
            _ => Err("the shared OAuth pair is incomplete".into()),
        }
    }

    async fn set(&self, pair: &Pair) -> Result<(), String> {
        let plain = Zeroizing::new(
            json!({
                "access_token": pair.access.expose_secret(),
                "refresh_token": pair.refresh.expose_secret(),
                "expires": pair.expires_at,
                "server_endpoint": pair.server_endpoint,
            })
            .to_string(),
        );
        let sealed = self
            .key
            .seal(&plain, self.name.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut conn = self.conn.clone();
        self.bounded::<()>(
            redis::cmd("SET")
                .arg(&self.name)
                .arg(sealed)
                .query_async(&mut conn),
        )
        .await
    }

    async fn try_lock(&self, holder: &str, until_ms: i64) -> Result<bool, String> {
        let invocation = lock::take(&self.lock_name(), holder, until_ms);
        let mut conn = self.conn.clone();
        let taken: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(taken == 1)
    }

    async fn free(&self, holder: &str) -> Result<(), String> {
        let invocation = lock::free(&self.lock_name(), holder);
        let mut conn = self.conn.clone();
        let _: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(())
    }
}

/// A Redis failure in words that hold no value: its kind or the server's error code.
fn failure(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "Redis did not answer in time".into()
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        "Redis is unreachable".into()
    } else if let Some(code) = e.code() {
        format!("Redis refused a call ({code})")
    } else {
        format!("Redis failed ({:?})", e.kind())
    }
}

/// The shared store failing, in words that name it.
fn unavailable(detail: String) -> HolderError {
    crate::metrics::redis_error(crate::metrics::RedisPart::Identity);
    HolderError::Unavailable(format!(
        "the store shared with the other replicas is unavailable ({detail})"
    ))
}

impl Holder for RedisPair {
    fn describe(&self) -> &'static str {
        "the OAuth identity's token pair the replicas share"
    }

    fn load(&self) -> BoxFuture<'_, Result<Option<Pair>, HolderError>> {
        Box::pin(async move { self.get().await.map_err(unavailable) })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, HolderError>> {
        Box::pin(async move { self.try_lock(holder, until_ms).await.map_err(unavailable) })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), HolderError>> {
        Box::pin(async move { self.free(holder).await.map_err(unavailable) })
    }

    fn store<'a>(&'a self, pair: &'a Pair) -> BoxFuture<'a, Result<(), HolderError>> {
        Box::pin(async move { self.set(pair).await.map_err(unavailable) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_neither_portal_nor_client() {
        let k = identity_key("https://p.bitrix24.example", "local.app.1");
        assert!(k.starts_with(KEY_PREFIX));
        assert!(!k.contains("bitrix24") && !k.contains("local.app"));
        assert_ne!(k, identity_key("https://p.bitrix24.example", "local.app.2"));
        assert_eq!(k, identity_key("https://p.bitrix24.example", "local.app.1"));
    }
}
