//! Bearer-token check for the MCP routes (`/mcp`, `/sse`, `/message`).
//!
//! One shared token (`--auth-token` / `MCP_AUTH_TOKEN`), compared in constant time so a
//! client cannot learn it byte by byte from response timings. Missing or wrong tokens get
//! `401` with `WWW-Authenticate: Bearer` (RFC 6750), which is what MCP clients expect.
//!
//! `bearer_token` (also used by the sign-in check, `sign_in::resource`) stays hand-written
//! rather than the `headers` crate's `Authorization<Bearer>` (or axum-extra's
//! `TypedHeader`), which parses differently: it refuses a value with whitespace before
//! the scheme, keeps extra whitespace around the token (`Bearer  x `) as part of it,
//! takes `Bearer` followed only by spaces as a token made of spaces instead of refusing
//! it, and its older releases match the scheme case-sensitively. The tests here and in
//! tests/http/http_security.rs exercise those cases; `headers` is not in the tree either.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The expected token, or none (auth off: only allowed on loopback addresses).
#[derive(Clone, Debug, Default)]
pub struct BearerAuth {
    token: Option<Arc<SecretString>>,
}

/// Outcome of checking one request.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer token that is not ours.
    Invalid,
}

impl BearerAuth {
    /// Requires `token` on every request; `None` lets every request through.
    pub fn new(token: Option<&SecretString>) -> Self {
        Self {
            token: token.map(|t| Arc::new(t.clone())),
        }
    }

    /// Whether a token is required.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the request headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(AuthFailure::Missing)?;
        // ct_eq runs in time independent of the contents; only a length mismatch
        // returns early, and the length of a random token is no secret.
        if bool::from(
            presented
                .as_bytes()
                .ct_eq(expected.expose_secret().as_bytes()),
        ) {
            Ok(())
        } else {
            Err(AuthFailure::Invalid)
        }
    }
}

/// The token of an `Authorization` value whose scheme is `Bearer` (case-insensitive),
/// surrounding whitespace ignored; none when the token is empty.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// axum middleware: answers 401 unless [`BearerAuth::check`] passes.
pub async fn require_bearer(
    State(auth): State<BearerAuth>,
    request: Request,
    next: Next,
) -> Response {
    match auth.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(failure) => {
            // Never log the presented value: it may be a near-miss of the real token.
            tracing::info!(
                path = request.uri().path(),
                ?failure,
                "request refused: bearer token missing or wrong"
            );
            failure.into_response()
        }
    }
}

impl IntoResponse for AuthFailure {
    fn into_response(self) -> Response {
        let (challenge, text) = match self {
            AuthFailure::Missing => (
                "Bearer",
                "Unauthorized: send the server's token as `Authorization: Bearer <token>`",
            ),
            AuthFailure::Invalid => (
                "Bearer error=\"invalid_token\"",
                "Unauthorized: the bearer token is not valid for this server",
            ),
        };
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            )],
            text,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn accepts_only_the_exact_token() {
        let auth = BearerAuth::new(Some(&"s3cret-token-value".into()));
        assert!(auth.enabled());
        assert_eq!(
            auth.check(&headers(Some("Bearer s3cret-token-value"))),
            Ok(())
        );
        assert_eq!(
            auth.check(&headers(Some("bearer  s3cret-token-value "))),
            Ok(())
        );
        assert_eq!(auth.check(&headers(None)), Err(AuthFailure::Missing));
        assert_eq!(
            auth.check(&headers(Some("Bearer"))),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            auth.check(&headers(Some("Basic s3cret-token-value"))),
            Err(AuthFailure::Missing)
        );
        for wrong in [
            "Bearer s3cret-token-valu",
            "Bearer s3cret-token-value2",
            "Bearer S3CRET-TOKEN-VALUE",
        ] {
            assert_eq!(
                auth.check(&headers(Some(wrong))),
                Err(AuthFailure::Invalid),
                "{wrong}"
            );
        }
    }

    #[test]
    fn no_token_configured_lets_everything_through() {
        let auth = BearerAuth::new(None);
        assert!(!auth.enabled());
        assert_eq!(auth.check(&headers(None)), Ok(()));
    }

    #[test]
    fn challenge_header_is_bearer() {
        for failure in [AuthFailure::Missing, AuthFailure::Invalid] {
            let response = failure.into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
        }
    }
}
