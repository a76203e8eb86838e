//! Dynamic Client Registration (RFC 7591): what most MCP clients of the 2025-11-25
//! revision do first. Public clients (`none`: PKCE, no secret) are the norm; a client
//! that asks for `client_secret_post` or `client_secret_basic` (the Python SDK's default)
//! gets a secret too, kept here only as a hash, and PKCE stays required for everyone.
//!
//! Every field kept is bounded (the redirect URIs' count and length, the name, the whole
//! record), and refused rather than cut when over: a cut URI or name would mean
//! something else. How often one source may register is `limits`' job.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::SignIn;
use super::clients::{check_client_name, check_redirect_uris};
use super::secret::random_token;
use super::token::oauth_error;
use crate::store::{ClientRecord, StoreError, TokenHash};

/// How clients may authenticate at the token endpoint.
pub const AUTH_METHODS: [&str; 3] = ["none", "client_secret_post", "client_secret_basic"];

/// Largest record kept (redirect URIs and name together): real ones are a few hundred
/// bytes; 300 registrations of 10 × 100 KB URIs once grew the store by 300 MB.
const MAX_RECORD_BYTES: usize = 8 * 1024;

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
    if let Err(problem) = check_redirect_uris(&reg.redirect_uris) {
        return error_with("invalid_redirect_uri", &problem.to_string());
    }
    if let Some(Err(why)) = reg.client_name.as_deref().map(check_client_name) {
        return metadata_error(why);
    }
    let size = reg.redirect_uris.iter().map(String::len).sum::<usize>()
        + reg.client_name.as_ref().map_or(0, String::len);
    if size > MAX_RECORD_BYTES {
        return metadata_error("the redirect_uris and client_name together are longer than 8 KiB");
    }
    let method = reg.token_endpoint_auth_method.as_deref().unwrap_or("none");
    if !AUTH_METHODS.contains(&method) {
        return metadata_error(
            "token_endpoint_auth_method must be none, client_secret_post or client_secret_basic",
        );
    }
    let secret = (method != "none").then(random_token);
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
        client_name: reg.client_name,
        redirect_uris: reg.redirect_uris,
        created_at: crate::clock::now_s(),
        secret_hash: secret.as_deref().map(TokenHash::of),
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
    tracing::info!(client = ?record.client_id, name = ?record.client_name.as_deref().unwrap_or(""), "client registered");
    let mut answer = json!({
        "client_id": record.client_id,
        "client_id_issued_at": record.created_at,
        "client_name": record.client_name,
        "redirect_uris": record.redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    if let Some(secret) = secret {
        answer["client_secret"] = json!(secret);
        answer["client_secret_expires_at"] = json!(0);
    }
    (
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(answer),
    )
        .into_response()
}

fn metadata_error(detail: &str) -> Response {
    error_with("invalid_client_metadata", detail)
}

fn error_with(code: &str, detail: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, code, detail)
}
