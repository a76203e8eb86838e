//! CORS on `/mcp`, `/sse` and `/message`, for MCP clients that run in a browser.
//!
//! A browser asks first (`OPTIONS` with `Origin` and `Access-Control-Request-Method`,
//! never with a token), so preflights are answered before the caller check; the answer
//! allows the headers MCP clients send, and actual answers expose `Mcp-Session-Id` (the
//! session) and `WWW-Authenticate` (where to sign in). Who may call is still decided by
//! the Host/Origin allow-list, through rmcp's own check ([`RmcpCheck`]): a preflight
//! from a foreign origin (or to a foreign Host) gets rmcp's 403 and no allow headers,
//! and an answer to a foreign origin never carries `Access-Control-Allow-Origin`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::host_origin::RmcpCheck;

/// How long a browser may reuse a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer of the MCP routes: allows an origin only when `check` passes the
/// request's Host and Origin.
pub fn layer(check: RmcpCheck) -> CorsLayer {
    let session = HeaderName::from_static("mcp-session-id");
    CorsLayer::new()
        .allow_origin(AllowOrigin::async_predicate(move |_origin, parts| {
            let check = check.clone();
            let (uri, headers) = (parts.uri.clone(), parts.headers.clone());
            async move { check.refusal(&uri, &headers).await.is_none() }
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            session.clone(),
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([session, header::WWW_AUTHENTICATE])
        .max_age(MAX_AGE)
}

/// axum middleware outside [`layer`]: a preflight that the Host/Origin check refuses
/// gets that refusal (403, or 400 for a malformed Host) instead of a CORS answer.
pub async fn refuse_foreign_preflight(
    State(check): State<RmcpCheck>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::OPTIONS {
        return next.run(request).await;
    }
    super::host_origin::enforce(State(check), request, next).await
}
