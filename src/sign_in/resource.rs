//! The resource server's check on `/mcp`, `/sse` and `/message`: a bearer token this
//! server issued, for this resource, not expired or revoked. The person it belongs to
//! becomes the request's [`Caller`], which the MCP layer passes to every portal call.
//!
//! The store is asked on every request, so `users revoke` takes effect at once, also
//! from another process on the same store.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::transport::bearer::bearer_token;

use super::{SCOPE, SignIn};
use crate::bitrix::Caller;
use crate::clock::now_s;
use crate::store::{TokenHash, TokenKind};

/// axum middleware: 401 with the discovery challenge unless the bearer token is valid.
pub async fn require(State(sign_in): State<SignIn>, mut request: Request, next: Next) -> Response {
    let Some(token) = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
    else {
        return challenge(&sign_in, None);
    };
    let found = match sign_in.store().token(&TokenHash::of(token), now_s()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!("sign-in store error: {e}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "the sign-in store is unavailable; try again in a few seconds",
            )
                .into_response();
        }
    };
    let valid = found.filter(|(issued, grant)| {
        issued.kind == TokenKind::Access
            && super::authorize::same_resource(&grant.resource, &sign_in.resource())
    });
    let Some((_, grant)) = valid else {
        return challenge(
            &sign_in,
            Some("the access token is unknown, expired or revoked"),
        );
    };
    let person = match sign_in
        .inner
        .people
        .get(&grant.member_id, grant.user_id)
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => {
            return challenge(&sign_in, Some("the sign-in has ended; sign in again"));
        }
        Err(e) => {
            tracing::warn!("sign-in store error: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    request.extensions_mut().insert(Caller::OAuth(person));
    let client_name = sign_in.client_name(&grant.client_id).await;
    request.extensions_mut().insert(SignedInClient {
        id: grant.client_id,
        name: client_name,
    });
    request.extensions_mut().insert(PersonId {
        member_id: grant.member_id,
        user_id: grant.user_id,
    });
    next.run(request).await
}

/// Who a request's token belongs to: a person of a portal. Put in the request's
/// extensions next to their [`Caller`], so that the transport can bind a session to the
/// person who opened it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonId {
    /// The portal's `member_id`.
    pub member_id: String,
    /// The person's user id on that portal.
    pub user_id: i64,
}

/// The client a request's token was issued to, in the request's extensions beside
/// [`PersonId`] (apart from it: sessions are bound to the person, whichever client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedInClient {
    /// Its client id.
    pub id: String,
    /// Its name, when the audit trail is on and it has one.
    pub name: Option<std::sync::Arc<str>>,
}

/// 401 with `WWW-Authenticate: Bearer resource_metadata=…, scope=…` (RFC 9728 §5.1),
/// from which clients start the sign-in flow.
fn challenge(sign_in: &SignIn, invalid: Option<&str>) -> Response {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\", scope=\"{SCOPE}\"",
        sign_in.resource_metadata_url()
    );
    if let Some(why) = invalid {
        value.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{why}\""
        ));
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({
            "error": if invalid.is_some() { "invalid_token" } else { "unauthorized" },
            "error_description": invalid.unwrap_or("sign in: this server needs an access token (MCP authorization)"),
        })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
