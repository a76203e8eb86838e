//! Requests in flight, so a graceful shutdown can let them finish before it closes the
//! sessions that carry their answers.
//!
//! On `/mcp` a POST is in flight until its response body ends (for a JSON-RPC request
//! that is the SSE stream or JSON body carrying the answer). On legacy SSE the POST is
//! answered at once and the reply travels on the event stream, so the shim holds a
//! token per request id until the reply has been sent.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

/// Counts requests in flight. Cheap to clone; clones share the count.
#[derive(Clone, Default)]
pub struct InFlight(TaskTracker);

/// Held while one request is in flight.
pub type InFlightToken = TaskTrackerToken;

impl InFlight {
    /// Marks one request in flight until the token is dropped.
    pub fn token(&self) -> InFlightToken {
        self.0.token()
    }

    /// Requests in flight now.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Waits until nothing is in flight, at most `bound`; true if everything finished.
    pub async fn drain(&self, bound: Duration) -> bool {
        self.0.close();
        tokio::time::timeout(bound, self.0.wait()).await.is_ok()
    }
}

/// axum middleware for `/mcp`: a POST counts as in flight until its response body ends
/// or the client goes away. GET (the standalone event stream) and DELETE never do.
pub async fn track_posts(
    State(inflight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let token = inflight.token();
    let response = next.run(request).await;
    response.map(move |body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            // The closure owns the token, so it lives exactly as long as the body stream.
            let _held = &token;
            chunk
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tokens_and_gives_up_at_the_bound() {
        let inflight = InFlight::default();
        assert!(
            inflight.drain(Duration::from_secs(5)).await,
            "nothing in flight"
        );

        let inflight = InFlight::default();
        let held = inflight.token();
        assert_eq!(inflight.count(), 1);
        // Never released: the bound ends the wait.
        assert!(!inflight.drain(Duration::from_millis(50)).await);
        drop(held);

        let inflight = InFlight::default();
        let token = inflight.token();
        let release = tokio::spawn(async move {
            tokio::task::yield_now().await;
            drop(token);
        });
        assert!(
            inflight.drain(Duration::from_secs(30)).await,
            "released token ends the wait"
        );
        release.await.unwrap();
        assert_eq!(inflight.count(), 0);
    }
}
