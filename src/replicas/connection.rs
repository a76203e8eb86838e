//! The Redis connection of the state replicas consult on every portal call (the pacing
//! bucket, the operating-limit gate, the configured identity's pair): one round trip may
//! take at most a second, and a dead connection is retried once, not after a backoff, so
//! calls fail at once while Redis is away instead of holding their whole budget.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::store::StoreError;

/// Longest wait for one answer.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(1);

/// Connects to `url` (`redis://[user:password@]host:port/db` or `rediss://…`); fails when
/// Redis does not answer, so that start-up can say so. Also returns how to name the store
/// in messages: `Redis at host:port/db`, without credentials. The manager is cheap to
/// clone and multiplexes, so one connection serves every user of it.
pub async fn connect(url: &str) -> Result<(ConnectionManager, String), StoreError> {
    let client = redis::Client::open(url)
        .map_err(|e| StoreError::Unavailable(format!("the Redis URL is not valid: {e}")))?;
    let info = client.get_connection_info();
    let store = format!("Redis at {}/{}", info.addr(), info.redis_settings().db());
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        // rustls is built without a default provider; the one reqwest uses is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(ROUND_TRIP_TIMEOUT))
        .set_response_timeout(Some(ROUND_TRIP_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50));
    let conn = tokio::time::timeout(
        ROUND_TRIP_TIMEOUT * 3,
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| StoreError::Unavailable(format!("{store} did not answer")))?
    .map_err(|e| StoreError::Unavailable(format!("{store}: {e}")))?;
    Ok((conn, store))
}

/// One `PING` on `conn`, within [`ROUND_TRIP_TIMEOUT`]: whether Redis answers now (the
/// readiness check asks it).
pub async fn ping(conn: &ConnectionManager) -> Result<(), StoreError> {
    let mut conn = conn.clone();
    let answer: Result<String, _> = tokio::time::timeout(
        ROUND_TRIP_TIMEOUT,
        redis::cmd("PING").query_async(&mut conn),
    )
    .await
    .map_err(|_| StoreError::Unavailable("Redis did not answer PING in time".into()))?;
    answer
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(format!("Redis: {e}")))
}
