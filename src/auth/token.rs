//! `/token` (authorization code with PKCE, refresh with rotation) and `/revoke`
//! (RFC 7009). This server's tokens are 256-bit random strings, stored only as hashes
//! and bound to the one resource it protects.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::authorize::same_resource;
use super::secret::{pkce_matches, random_token};
use super::{REFRESH_TTL, SCOPE, SignIn, now};
use crate::store::{Grant, IssuedToken, RefreshUse, StoreError, TokenHash, TokenKind};

type Form = axum::extract::Form<HashMap<String, String>>;

/// `POST /token`.
pub async fn token(
    State(sign_in): State<SignIn>,
    headers: HeaderMap,
    form: Result<Form, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::extract::Form(f)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send the parameters as application/x-www-form-urlencoded",
        );
    };
    let p = Params(f);
    if let Some(asked) = p.get("resource")
        && !same_resource(asked, &sign_in.resource())
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            &format!("this server issues tokens only for {}", sign_in.resource()),
        );
    }
    let client = match authenticate(&sign_in, &headers, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let outcome = match p.get("grant_type") {
        Some("authorization_code") => code_grant(&sign_in, &p, client.as_deref()).await,
        Some("refresh_token") => refresh_grant(&sign_in, &p, client.as_deref()).await,
        _ => Err(refused(
            "unsupported_grant_type",
            "use grant_type authorization_code or refresh_token",
        )),
    };
    outcome.unwrap_or_else(|r| r)
}

/// The form's parameters; empty values count as absent.
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Who is asking (RFC 6749 §2.3): HTTP Basic or `client_secret` in the form for a
/// confidential client, `client_id` alone for a public one. `None` when the request
/// names no client (allowed only for a public client's refresh).
async fn authenticate(
    sign_in: &SignIn,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Option<String>, Response> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    let (client_id, secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (
            p.get("client_id").map(str::to_string),
            p.get("client_secret").map(str::to_string),
        ),
    };
    let Some(client_id) = client_id else {
        return Ok(None);
    };
    if super::clients::is_metadata_url(&client_id, true) {
        // A metadata-document client is public by definition; /authorize checked it.
        return Ok(Some(client_id));
    }
    let record = sign_in
        .store()
        .client(&client_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unauthorized_client("the client is not registered here; register again"))?;
    if let Some(expected) = record.secret_hash {
        let presented =
            secret.ok_or_else(|| unauthorized_client("this client must send its client_secret"))?;
        if TokenHash::of(&presented) != expected {
            return Err(unauthorized_client("wrong client_secret"));
        }
    }
    Ok(Some(client_id))
}

/// `Basic base64(urlencoded id ":" urlencoded secret)`.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn unauthorized_client(detail: &str) -> Response {
    let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", detail);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Basic realm=\"token\""),
    );
    r
}

async fn code_grant(
    sign_in: &SignIn,
    p: &Params,
    client: Option<&str>,
) -> Result<Response, Response> {
    let get = |k| p.get(k);
    let code = get("code").ok_or_else(|| refused("invalid_request", "code is missing"))?;
    let verifier = get("code_verifier").ok_or_else(|| {
        refused(
            "invalid_request",
            "code_verifier is missing (PKCE is required)",
        )
    })?;
    let client_id = client.ok_or_else(|| refused("invalid_request", "client_id is missing"))?;
    let found = sign_in
        .store()
        .take_code(&TokenHash::of(code), now())
        .await
        .map_err(unavailable)?;
    let invalid = || {
        refused(
            "invalid_grant",
            "the code is unknown, expired or already used",
        )
    };
    let code = found.ok_or_else(invalid)?;
    // The code is spent whatever follows: a wrong verifier must not leave it usable.
    if code.client_id != client_id
        || !same_resource(&code.resource, &sign_in.resource())
        || get("redirect_uri").is_some_and(|r| r != code.redirect_uri)
        || !pkce_matches(verifier, &code.code_challenge)
    {
        return Err(refused(
            "invalid_grant",
            "the code was issued to another client, redirect URI or PKCE challenge",
        ));
    }
    let grant = Grant {
        id: uuid::Uuid::new_v4().to_string(),
        client_id: code.client_id,
        member_id: code.member_id,
        user_id: code.user_id,
        resource: code.resource,
        scope: code.scope,
        created_at: now(),
        revoked: false,
    };
    sign_in
        .store()
        .put_grant(grant.clone())
        .await
        .map_err(unavailable)?;
    issue(sign_in, &grant).await
}

async fn refresh_grant(
    sign_in: &SignIn,
    p: &Params,
    client: Option<&str>,
) -> Result<Response, Response> {
    let get = |k| p.get(k);
    let presented = get("refresh_token")
        .ok_or_else(|| refused("invalid_request", "refresh_token is missing"))?;
    let used = sign_in
        .store()
        .use_refresh(&TokenHash::of(presented), now())
        .await
        .map_err(unavailable)?;
    match used {
        RefreshUse::Fresh(_, grant) => {
            if !same_resource(&grant.resource, &sign_in.resource()) {
                // A store shared with another server holds its grants too.
                return Err(refused(
                    "invalid_grant",
                    "the refresh token was issued for another resource",
                ));
            }
            if client.is_some_and(|c| c != grant.client_id) {
                return Err(refused(
                    "invalid_grant",
                    "the refresh token was issued to another client",
                ));
            }
            issue(sign_in, &grant).await
        }
        RefreshUse::Reused { grant_id } => {
            // OAuth 2.1 §4.3.1: a reused refresh token may be stolen; the store has
            // revoked its whole grant, so whoever holds it must sign in again.
            tracing::warn!(grant = %grant_id, "a refresh token was used twice; its sign-in is revoked");
            Err(refused(
                "invalid_grant",
                "the refresh token was already used; sign in again",
            ))
        }
        RefreshUse::Unknown => Err(refused(
            "invalid_grant",
            "the refresh token is unknown, expired or revoked",
        )),
    }
}

/// A new access and refresh token for `grant`.
async fn issue(sign_in: &SignIn, grant: &Grant) -> Result<Response, Response> {
    let (access, refresh) = (random_token(), random_token());
    let at = now();
    let lifetime = sign_in.inner.token_lifetime;
    for (token, kind, ttl) in [
        (&access, TokenKind::Access, lifetime),
        (&refresh, TokenKind::Refresh, REFRESH_TTL),
    ] {
        sign_in
            .store()
            .put_token(IssuedToken {
                hash: TokenHash::of(token),
                grant_id: grant.id.clone(),
                kind,
                expires_at: at + ttl,
                used: false,
            })
            .await
            .map_err(unavailable)?;
    }
    Ok((
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": SCOPE,
        })),
    )
        .into_response())
}

/// `POST /revoke` (RFC 7009): always 200, whether the token was known or not.
pub async fn revoke(
    State(sign_in): State<SignIn>,
    form: Result<Form, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::extract::Form(f)) = form else {
        return refused("invalid_request", "send token as a form parameter");
    };
    let Some(token) = f.get("token").filter(|t| !t.is_empty()) else {
        return refused("invalid_request", "token is missing");
    };
    match sign_in.store().revoke_token(&TokenHash::of(token)).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => unavailable(e),
    }
}

fn refused(code: &str, detail: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, code, detail)
}

fn unavailable(e: StoreError) -> Response {
    tracing::warn!("sign-in store error: {e}");
    oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the sign-in store is unavailable; try again later",
    )
}

/// An OAuth error answer (RFC 6749 §5.2).
pub fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}
