//! `GET /metrics` on a listener of its own (`--metrics-listen`), never on the MCP port:
//! what the numbers say about a team stays off the address clients reach. Served with
//! axum (already in the tree) rather than the exporter's bundled listener, which would
//! bring a second HTTP server stack; a scrape renders from the recorder's handle.
//!
//! Some numbers are read at scrape time rather than counted ([`Probe`]: the people signed
//! in, from the store); they are read again at most every [`PROBE_EVERY`], however often
//! Prometheus scrapes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The path scraped.
pub const PATH: &str = "/metrics";
/// How long a probe's reading is reused.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long a probe may take before the scrape goes on without it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often histogram samples are folded into their buckets between scrapes, so memory
/// stays flat when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The classic text exposition's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A reading taken at scrape time: sets its gauges through this module's functions.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    probes: Arc<[Probe]>,
    probed_at: Arc<Mutex<Option<Instant>>>,
}

/// Binds the metrics address (before anything else starts, so a taken port stops the
/// server at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    probes: Vec<Probe>,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("metrics on http://{addr}{PATH} (keep this address off the public network)");
    }
    let upkeep = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = every.tick() => handle.run_upkeep(),
                }
            }
        }
    };
    tokio::spawn(upkeep);
    let app = Router::new().route(PATH, get(metrics)).with_state(Scrape {
        handle,
        probes: probes.into(),
        probed_at: Arc::new(Mutex::new(None)),
    });
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!("the metrics listener failed: {e}");
    }
}

async fn metrics(State(scrape): State<Scrape>) -> Response {
    let due = {
        let mut at = scrape.probed_at.lock().unwrap_or_else(|e| e.into_inner());
        let due = at.is_none_or(|t| t.elapsed() >= PROBE_EVERY);
        if due {
            *at = Some(Instant::now());
        }
        due
    };
    if due {
        for probe in scrape.probes.iter() {
            let _ = tokio::time::timeout(PROBE_TIMEOUT, probe()).await;
        }
    }
    scrape.handle.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        scrape.handle.render(),
    )
        .into_response()
}
