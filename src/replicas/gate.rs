//! The operating-limit memory of each method in Redis, shared by every replica (issue 13).
//!
//! Two strings per portal and method: `b24mcp:gate:block:KEY` holds the unix time the
//! block ends (and expires then, `PXAT`), `b24mcp:gate:probe:KEY` is the claim on the
//! next probe (`SET NX PX` of the probe interval: the one replica that sets it sends the
//! probe). A success deletes both. Admission is one script, so that reading the block and
//! claiming the probe are one step for all replicas.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::bitrix::retry::Admit;
use crate::bitrix::{BoxFuture, GateUnavailable, SharedGate};
use crate::replicas::connection::{self, ROUND_TRIP_TIMEOUT};
use crate::store::StoreError;

/// Prefix of the gate keys; `block:` or `probe:`, the portal's origin, `/` and the
/// method follow.
pub const KEY_PREFIX: &str = "b24mcp:gate:";

/// KEYS: the block, the probe claim. ARGV: now (unix seconds), the probe interval in ms.
/// Returns `{0, ''}` open, `{1, end}` probe claimed, `{2, end}` blocked. The end is
/// returned as the stored string: Lua would truncate a number to an integer.
const ADMIT: &str = r#"
local ends = redis.call('GET', KEYS[1])
if not ends or tonumber(ends) <= tonumber(ARGV[1]) then return {0, ''} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1, ends} end
return {2, ends}
"#;

/// KEYS: the block, the probe claim. ARGV: the end (unix seconds, as text), the same in
/// unix milliseconds, the probe interval in ms. A later end already stored stays.
const BLOCK: &str = r#"
local ends = redis.call('GET', KEYS[1])
if not ends or tonumber(ends) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
return 1
"#;

/// A [`SharedGate`] in Redis. One per process; it reconnects by itself after Redis comes
/// back, and until then every admission fails at once.
pub struct RedisGate {
    conn: ConnectionManager,
    admit: redis::Script,
    block: redis::Script,
    /// `Redis at host:port/db`: the URL without its credentials.
    store: String,
}

impl std::fmt::Debug for RedisGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisGate({})", self.store)
    }
}

impl RedisGate {
    /// Connects to `url` (`redis://[user:password@]host:port/db` or `rediss://…`); fails
    /// when Redis does not answer, so that start-up can say so.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (conn, store) = connection::connect(url).await?;
        Ok(Self::on(conn, store))
    }

    /// On a connection made by [`connection::connect`] (shared with other users of it);
    /// `store` names it in messages.
    pub fn on(conn: ConnectionManager, store: String) -> Self {
        RedisGate {
            conn,
            admit: redis::Script::new(ADMIT),
            block: redis::Script::new(BLOCK),
            store,
        }
    }

    fn keys(key: &str) -> [String; 2] {
        [
            format!("{KEY_PREFIX}block:{key}"),
            format!("{KEY_PREFIX}probe:{key}"),
        ]
    }

    /// Awaits one round trip within [`ROUND_TRIP_TIMEOUT`].
    async fn within<T>(
        &self,
        answer: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, GateUnavailable> {
        match tokio::time::timeout(ROUND_TRIP_TIMEOUT, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.unavailable(e.to_string())),
            Err(_) => Err(self.unavailable(format!(
                "no answer within {} s",
                ROUND_TRIP_TIMEOUT.as_secs()
            ))),
        }
    }

    fn unavailable(&self, detail: String) -> GateUnavailable {
        crate::metrics::redis_error(crate::metrics::RedisPart::Gate);
        GateUnavailable {
            store: self.store.clone(),
            detail,
        }
    }
}

fn millis(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl SharedGate for RedisGate {
    fn store(&self) -> String {
        self.store.clone()
    }

    fn admit<'a>(
        &'a self,
        key: &'a str,
        now: f64,
        probe_interval: Duration,
    ) -> BoxFuture<'a, Result<Admit, GateUnavailable>> {
        Box::pin(async move {
            let [block, probe] = Self::keys(key);
            let mut invocation = self.admit.key(block);
            invocation
                .key(probe)
                .arg(format!("{now:.3}"))
                .arg(millis(probe_interval));
            let mut conn = self.conn.clone();
            let (state, ends) = self
                .within(invocation.invoke_async::<(i64, String)>(&mut conn))
                .await?;
            // An end that is not a number was not written by this server: ignore it.
            let ends = ends.parse::<f64>().ok().filter(|e| e.is_finite());
            Ok(match (state, ends) {
                (1, Some(_)) => Admit::Probe,
                (2, Some(ends)) => Admit::Blocked(ends),
                _ => Admit::Open,
            })
        })
    }

    fn block<'a>(
        &'a self,
        key: &'a str,
        until: f64,
        probe_interval: Duration,
    ) -> BoxFuture<'a, Result<(), GateUnavailable>> {
        Box::pin(async move {
            let [block, probe] = Self::keys(key);
            let mut invocation = self.block.key(block);
            invocation
                .key(probe)
                .arg(format!("{until:.3}"))
                .arg((until * 1000.0).ceil() as u64)
                .arg(millis(probe_interval));
            let mut conn = self.conn.clone();
            self.within(invocation.invoke_async::<i64>(&mut conn))
                .await
                .map(|_| ())
        })
    }

    fn clear<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), GateUnavailable>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let [block, probe] = Self::keys(key);
            let mut del = redis::cmd("DEL");
            del.arg(block).arg(probe);
            self.within(del.query_async::<i64>(&mut conn))
                .await
                .map(|_| ())
        })
    }
}
