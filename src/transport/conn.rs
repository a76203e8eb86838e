//! The HTTP server's connections: a bounded accept loop, each connection served by
//! hyper's HTTP/1 builder with a header-read timeout, and a graceful stop.
//!
//! Hand-written rather than `axum::serve` because that exposes none of hyper's timeouts
//! and no bound on connections: a client that sends half a request, or opens a
//! keep-alive connection and says nothing, would hold a descriptor for ever, and enough
//! of them stop the server.
//!
//! - Header-read timeout ([`ConnLimits::header_timeout`]): hyper starts it whenever a
//!   connection waits for a request head (the first, and every next one on a kept-alive
//!   connection), so it is also the idle bound of a keep-alive connection. It never runs
//!   while a request is being answered: a long tool call or an SSE stream is not idle.
//! - At most [`ConnLimits::max_connections`] open at once: past it the loop stops
//!   accepting until one closes (connections wait in the kernel's backlog rather than
//!   being refused), so descriptors stay free for the portal calls and the store.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default of `--http-header-timeout`: long enough for a slow link to send a request
/// head, short enough that idle or half-open connections do not pile up.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Descriptors left for everything but client connections (portal and store
/// connections, files) when the default connection bound is derived from the limit.
const RESERVED_DESCRIPTORS: usize = 128;
/// The default connection bound where the descriptor limit cannot be read, or is high.
const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Pause after an accept error (e.g. out of descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Timeouts and bounds on client connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// A connection waiting this long for (the rest of) a request head is closed; this
    /// includes an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Connections open at once; past it new ones wait to be accepted.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

/// The connection bound when none is set: 1000, or fewer where the process may open
/// fewer descriptors (the soft `RLIMIT_NOFILE`, read from `/proc/self/limits`, minus a
/// reserve), so that clients alone can never use them all up.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| soft_open_files(&text));
    match soft {
        Some(limit) => limit
            .saturating_sub(RESERVED_DESCRIPTORS)
            .clamp(16, DEFAULT_MAX_CONNECTIONS),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// The soft limit of the `Max open files` row of `/proc/self/limits`.
fn soft_open_files(limits: &str) -> Option<usize> {
    let row = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = row
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

/// Serves `app` on `listener` until `stop` is cancelled; then drops the listener (calls
/// `on_closed`), asks every connection to finish its current answer and close, and
/// returns once all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: CancellationToken,
    on_closed: impl FnOnce(),
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "the connection limit is reached; new connections wait until one closes \
                     (--max-connections, MCP_MAX_CONNECTIONS)"
                );
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Per-connection failures (reset before accept) and descriptor
                    // exhaustion alike: pause, then accept again.
                    tracing::debug!("accepting a connection failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Answers go out as several small writes (headers, then SSE events); with Nagle
        // on, each waits for the client's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // As axum's `into_make_service_with_connect_info`: handlers may ask for the peer.
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            tower_service::Service::call(&mut app, request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let closing = closing.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => r,
                _ = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // Timeouts and clients leaving mid-request; nothing to act on.
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    on_closed();
    closing.cancel();
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_descriptor_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(text), Some(1024));
        assert_eq!(
            soft_open_files(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(usize::MAX)
        );
        assert_eq!(soft_open_files("nothing here"), None);
    }

    #[test]
    fn the_default_bound_leaves_descriptors_free() {
        let n = default_max_connections();
        assert!((16..=DEFAULT_MAX_CONNECTIONS).contains(&n), "{n}");
    }
}
