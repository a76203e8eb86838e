//! Dynamic Client Registration (RFC 7591): what most MCP clients of the 2025-11-25
//! revision do first. Only public clients (PKCE, no secret) are registered.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::SignIn;
use super::clients::redirect_uri_allowed;
use super::token::oauth_error;
use crate::store::{ClientRecord, StoreError};

/// At most this many redirect URIs per client; real clients register one or two.
const MAX_REDIRECT_URIS: usize = 10;

#[derive(Deserialize)]
pub struct Registration {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
}

/// `POST /register`.
pub async fn register(
    State(sign_in): State<SignIn>,
    body: Result<Json<Registration>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(reg)) = body else {
        return metadata_error("the body is not a JSON client metadata document");
    };
    if reg.redirect_uris.is_empty() || reg.redirect_uris.len() > MAX_REDIRECT_URIS {
        return error_with("invalid_redirect_uri", "give one to ten redirect_uris");
    }
    if let Some(bad) = reg.redirect_uris.iter().find(|u| !redirect_uri_allowed(u)) {
        return error_with(
            "invalid_redirect_uri",
            &format!(
                "`{}` is not allowed: use https, http on a loopback address, or an app scheme",
                bad.chars().take(200).collect::<String>()
            ),
        );
    }
    if reg
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return metadata_error(
            "only public clients are registered: token_endpoint_auth_method must be none",
        );
    }
    let grants_ok = reg.grant_types.as_ref().is_none_or(|g| {
        g.iter()
            .all(|t| t == "authorization_code" || t == "refresh_token")
    });
    let responses_ok = reg
        .response_types
        .as_ref()
        .is_none_or(|r| r.iter().all(|t| t == "code"));
    if !grants_ok || !responses_ok {
        return metadata_error(
            "only the authorization_code and refresh_token grants with response type code are supported",
        );
    }
    let record = ClientRecord {
        client_id: uuid::Uuid::new_v4().to_string(),
        client_name: reg.client_name.map(|n| n.chars().take(200).collect()),
        redirect_uris: reg.redirect_uris,
        created_at: super::now(),
    };
    match sign_in.store().put_client(record.clone()).await {
        Ok(()) => {}
        Err(StoreError::Full) => {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "too many registered clients; try again later",
            );
        }
        Err(e) => {
            tracing::warn!("client registration failed: {e}");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the sign-in store is unavailable; try again later",
            );
        }
    }
    tracing::info!(client = %record.client_id, name = record.client_name.as_deref().unwrap_or(""), "client registered");
    (
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "client_id": record.client_id,
            "client_id_issued_at": record.created_at,
            "client_name": record.client_name,
            "redirect_uris": record.redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        })),
    )
        .into_response()
}

fn metadata_error(detail: &str) -> Response {
    error_with("invalid_client_metadata", detail)
}

fn error_with(code: &str, detail: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, code, detail)
}
