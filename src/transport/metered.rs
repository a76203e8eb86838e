//! Counts every HTTP request on the MCP port by the route pattern axum matched and the
//! status answered (`bitrix24_mcp_http_requests_total`). The pattern, not the path: a
//! path no route matched counts as `other`, so a scanner's paths never become series.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// axum middleware on the whole application.
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    crate::metrics::http_request(
        route.as_ref().map(MatchedPath::as_str),
        response.status().as_u16(),
    );
    response
}
