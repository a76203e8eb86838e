//! Malformed JSON-RPC bodies on `/mcp` get a JSON-RPC error with HTTP 400, as the MCP
//! transport rules ask, instead of rmcp's `415 Unsupported Media Type` with plain text;
//! a request whose id can be read gets its id back. The judgement is the stdio one
//! ([`super::jsonrpc::check_body`]), so both transports answer alike.
//!
//! Here a valid body is parsed twice, once by the validator and once by rmcp:
//! `StreamableHttpService` reads the request body itself and has no entry for a message
//! already parsed, so what we can hand on is bytes (the repaired ones when the validator
//! replaced lone surrogates). `/message` and stdio hand rmcp the validator's message.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use rmcp::model::{ClientRequest, JsonRpcMessage};

use super::jsonrpc::{BodyCheck, check_body};
use super::sessions::Initialize;

/// Checks a POSTed JSON body before rmcp parses it; everything else passes untouched.
pub async fn check(request: Request, next: Next) -> Response {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        });
    if request.method() != Method::POST || !is_json {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The body is already bounded by the router's RequestBodyLimitLayer.
    let bytes: Bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large: the request body is over the limit or could not be read",
            )
                .into_response();
        }
    };
    let (bytes, message) = match check_body(&bytes) {
        BodyCheck::Pass {
            repaired: None,
            message,
        } => (bytes, message),
        BodyCheck::Pass {
            repaired: Some(repaired),
            message,
        } => (Bytes::from(repaired), message),
        BodyCheck::Refuse(error) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                error.to_string(),
            )
                .into_response();
        }
    };
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    // What the session bound needs to know, without parsing again.
    if let JsonRpcMessage::Request(request) = &*message
        && let ClientRequest::InitializeRequest(_) = &request.request
        && let Ok(id) = serde_json::to_value(&request.id)
    {
        parts.extensions.insert(Initialize(id));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
