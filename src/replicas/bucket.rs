//! The pacing bucket of each portal in Redis, shared by every replica (issue 13).
//!
//! One Lua script runs the GCRA of [`crate::bitrix::pacing`] atomically on the Redis
//! server, with the server's clock (`TIME`): replicas whose clocks disagree still draw from
//! one bucket, and no two of them can take the same slot. The state per portal is one
//! string, the theoretical arrival time in microseconds of the server's clock, with a TTL
//! that ends when the bucket is empty again, so idle portals leave nothing behind.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::bitrix::{BoxFuture, BucketUnavailable, NoSlot, PaceError, SharedBucket};
use crate::replicas::connection::{self, ROUND_TRIP_TIMEOUT};
use crate::store::StoreError;

/// Prefix of the bucket keys; the portal's origin follows.
pub const KEY_PREFIX: &str = "b24mcp:bucket:";

/// KEYS[1]: the bucket. ARGV: `reserve` or `full`, the interval, the tolerance and the
/// longest wait accepted, in microseconds. Mirrors `Pacer::reserve` and `Pacer::note_full`.
/// Returns `{1, wait}` for a slot reserved `wait` µs from now, `{0, wait}` for a slot
/// refused. Numbers are written with `%.0f`: Lua's default `%.14g` would round a
/// microsecond timestamp.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = math.max(tonumber(stored), now) end
local function keep(new)
  redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
end
if ARGV[1] == 'full' then
  keep(math.max(tat, now + tolerance + interval))
  return {1, 0}
end
local wait = 0
if tat - now > tolerance then wait = tat - tolerance - now end
if wait > tonumber(ARGV[4]) then return {0, wait} end
keep(tat + interval)
return {1, wait}
"#;

/// A [`SharedBucket`] in Redis. One per process; it reconnects by itself after Redis
/// comes back, and until then every reservation fails at once.
pub struct RedisBucket {
    conn: ConnectionManager,
    script: redis::Script,
    /// `Redis at host:port/db`: the URL without its credentials.
    store: String,
}

impl std::fmt::Debug for RedisBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisBucket({})", self.store)
    }
}

impl RedisBucket {
    /// Connects to `url` (`redis://[user:password@]host:port/db` or `rediss://…`); fails
    /// when Redis does not answer, so that start-up can say so.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (conn, store) = connection::connect(url).await?;
        Ok(Self::on(conn, store))
    }

    /// On a connection made by [`connection::connect`] (shared with other users of it);
    /// `store` names it in messages.
    pub fn on(conn: ConnectionManager, store: String) -> Self {
        RedisBucket {
            conn,
            script: redis::Script::new(GCRA),
            store,
        }
    }

    /// Runs the script; `(granted, wait in µs)`.
    async fn run(
        &self,
        key: &str,
        op: &str,
        interval: Duration,
        tolerance: Duration,
        max_wait: Duration,
    ) -> Result<(bool, u64), BucketUnavailable> {
        let mut invocation = self.script.key(format!("{KEY_PREFIX}{key}"));
        invocation
            .arg(op)
            // Rounded so that the bucket is never looser than the local one.
            .arg(interval.as_nanos().div_ceil(1000) as u64)
            .arg(tolerance.as_micros() as u64)
            .arg(max_wait.as_micros() as u64);
        let mut conn = self.conn.clone();
        let mut answer = tokio::time::timeout(
            ROUND_TRIP_TIMEOUT,
            invocation.invoke_async::<(i64, i64)>(&mut conn),
        )
        .await;
        // The first call after a Redis restart finds the old connection dead (broken
        // pipe) while the manager reconnects: try once more on the new one. A repeat at
        // worst reserves one slot too many, which only makes the pacing stricter.
        if let Ok(Err(e)) = &answer
            && (e.is_connection_dropped() || e.is_io_error())
        {
            answer = tokio::time::timeout(
                ROUND_TRIP_TIMEOUT,
                invocation.invoke_async::<(i64, i64)>(&mut conn),
            )
            .await;
        }
        match answer {
            Ok(Ok((granted, wait))) => Ok((granted == 1, wait.max(0) as u64)),
            Ok(Err(e)) => Err(self.unavailable(e.to_string())),
            Err(_) => Err(self.unavailable(format!(
                "no answer within {} s",
                ROUND_TRIP_TIMEOUT.as_secs()
            ))),
        }
    }

    fn unavailable(&self, detail: String) -> BucketUnavailable {
        crate::metrics::redis_error(crate::metrics::RedisPart::Bucket);
        BucketUnavailable {
            store: self.store.clone(),
            detail,
        }
    }
}

impl SharedBucket for RedisBucket {
    fn store(&self) -> String {
        self.store.clone()
    }

    fn reserve<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        tolerance: Duration,
        max_wait: Duration,
    ) -> BoxFuture<'a, Result<Duration, PaceError>> {
        Box::pin(async move {
            let (granted, wait) = self
                .run(key, "reserve", interval, tolerance, max_wait)
                .await?;
            let wait = Duration::from_micros(wait);
            if granted {
                Ok(wait)
            } else {
                Err(PaceError::NoSlot(NoSlot { wait }))
            }
        })
    }

    fn note_full<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
        tolerance: Duration,
    ) -> BoxFuture<'a, Result<(), BucketUnavailable>> {
        Box::pin(async move {
            self.run(key, "full", interval, tolerance, Duration::ZERO)
                .await
                .map(|_| ())
        })
    }
}
