//! `GET /readyz`: whether this process should be sent requests now, for a load balancer
//! or Kubernetes' readiness probe (`/healthz` stays the liveness check: a process whose
//! Redis is away is alive and must not be restarted for it).
//!
//! Ready means: not draining after SIGTERM, and every dependency a call needs answers
//! one cheap round trip within [`PROBE_TIMEOUT`] (the sign-in store; the Redis connection
//! replicas share). Otherwise `503` with `{"status":"unavailable","reason":…}`, where the
//! reason is one word (`draining`, `store`, `redis`): never an address or a message, since
//! the route needs no token. Like `/healthz`, no auth and no Host check.
//!
//! One verdict serves every request for [`VERDICT_TTL`], so a flood of probes costs the
//! store at most one round trip per dependency in that time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redis::aio::ConnectionManager;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Longest wait for one dependency's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one verdict is reused.
pub const VERDICT_TTL: Duration = Duration::from_millis(500);

/// One thing a call needs, and how to ask whether it answers.
#[derive(Clone)]
enum Dependency {
    /// The sign-in store; `reason` is `redis` for a Redis store, `store` for SQLite.
    Store {
        store: Arc<dyn Store>,
        reason: &'static str,
    },
    /// The Redis connection replicas share (pacing bucket, operating-limit gate).
    Redis(ConnectionManager),
}

impl Dependency {
    fn reason(&self) -> &'static str {
        match self {
            Dependency::Store { reason, .. } => reason,
            Dependency::Redis(_) => "redis",
        }
    }

    /// `Err` with a message for the log (never for the answer).
    async fn ping(&self) -> Result<(), String> {
        let answer = match self {
            Dependency::Store { store, .. } => {
                tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await
            }
            Dependency::Redis(conn) => {
                tokio::time::timeout(PROBE_TIMEOUT, crate::replicas::connection::ping(conn)).await
            }
        };
        match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

/// The readiness state: the drain signal and the dependencies. Cheap to clone.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

struct Inner {
    draining: CancellationToken,
    dependencies: Vec<Dependency>,
    /// The last verdict (`None`: ready) and when it was reached; the lock also makes
    /// concurrent probes wait for one round trip instead of each making their own.
    last: Mutex<Option<(Instant, Option<&'static str>)>>,
}

impl Readiness {
    /// Ready until `draining` is cancelled (SIGTERM), with no dependency yet.
    pub fn new(draining: CancellationToken) -> Self {
        Self::with(draining, Vec::new())
    }

    fn with(draining: CancellationToken, dependencies: Vec<Dependency>) -> Self {
        Readiness {
            inner: Arc::new(Inner {
                draining,
                dependencies,
                last: Mutex::new(None),
            }),
        }
    }

    /// Also requires the sign-in store to answer; `on_redis` names the reason `redis`.
    pub fn with_store(self, store: Arc<dyn Store>, on_redis: bool) -> Self {
        let reason = if on_redis { "redis" } else { "store" };
        self.adding(Dependency::Store { store, reason })
    }

    /// Also requires the replicas' shared Redis connection to answer `PING`.
    pub fn with_redis(self, conn: ConnectionManager) -> Self {
        self.adding(Dependency::Redis(conn))
    }

    fn adding(self, dependency: Dependency) -> Self {
        let mut dependencies = self.inner.dependencies.clone();
        dependencies.push(dependency);
        Self::with(self.inner.draining.clone(), dependencies)
    }

    /// Whether SIGTERM has started the drain.
    pub fn draining(&self) -> bool {
        self.inner.draining.is_cancelled()
    }

    /// `None` when ready, else the reason.
    pub async fn verdict(&self) -> Option<&'static str> {
        if self.draining() {
            return Some("draining");
        }
        let mut last = self.inner.last.lock().await;
        if let Some((at, verdict)) = *last
            && at.elapsed() < VERDICT_TTL
        {
            return verdict;
        }
        let answers = futures::future::join_all(
            self.inner
                .dependencies
                .iter()
                .map(|d| async move { (d.reason(), d.ping().await) }),
        )
        .await;
        let mut verdict = None;
        for (reason, answer) in answers {
            if let Err(e) = answer {
                tracing::warn!(reason, "not ready: {e}");
                verdict = verdict.or(Some(reason));
            }
        }
        let was = last.map(|(_, v)| v);
        if verdict.is_none() && matches!(was, Some(Some(_))) {
            tracing::info!("ready again: every dependency answers");
        }
        *last = Some((Instant::now(), verdict));
        verdict
    }
}

/// The `/readyz` handler.
pub async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.verdict().await {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

/// While draining, every answer carries `Connection: close`, so kept-alive client
/// connections end after their current answer and reconnect through the load balancer
/// (to another replica) instead of staying on this one until it stops.
pub async fn close_when_draining(
    State(readiness): State<Readiness>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if readiness.draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_until_draining_then_says_why() {
        let draining = CancellationToken::new();
        let readiness = Readiness::new(draining.clone());
        assert_eq!(readiness.verdict().await, None);
        draining.cancel();
        assert_eq!(readiness.verdict().await, Some("draining"));
    }

    #[tokio::test]
    async fn an_sqlite_store_that_answers_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(
            &dir.path().join("s.sqlite3"),
            crate::store::StoreKey::from_hex(&"ab".repeat(32)).unwrap(),
        )
        .unwrap();
        let readiness = Readiness::new(CancellationToken::new()).with_store(Arc::new(store), false);
        assert_eq!(readiness.verdict().await, None);
    }
}
