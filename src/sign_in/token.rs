//! `/token` (authorization code with PKCE, refresh with rotation) and `/revoke`
//! (RFC 7009). This server's tokens are 256-bit random strings, stored only as hashes
//! and bound to the one resource it protects.
//!
//! Client credentials sent as `Authorization: Basic` are parsed by hand
//! (`basic_credentials`), not with the `headers` crate's `Authorization<Basic>`: that
//! one does not percent-decode the client id and secret, which RFC 6749 §2.3.1 requires
//! (they are form-urlencoded before base64), and it refuses whitespace before the scheme
//! (its older releases also match `Basic` case-sensitively).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::authorize::same_resource;
use super::secret::{pkce_matches, random_token};
use super::{REFRESH_TTL, SCOPE, SignIn};
use crate::clock::now_s;
use crate::store::{
    Grant, IssuedToken, RefreshUse, Rotation, StoreError, TokenHash, TokenKind, TokenPair,
};

/// `POST /token`.
pub async fn token(State(sign_in): State<SignIn>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match Params::parse(&headers, &body) {
        Ok(p) => p,
        Err(why) => return refused("invalid_request", why),
    };
    if let Some(asked) = p.get("resource")
        && !same_resource(asked, &sign_in.resource())
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            &format!("this server issues tokens only for {}", sign_in.resource()),
        );
    }
    let caller = match authenticate(&sign_in, &headers, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let outcome = match p.get("grant_type") {
        Some("authorization_code") => code_grant(&sign_in, &p, caller.as_ref()).await,
        Some("refresh_token") => refresh_grant(&sign_in, &p, caller.as_ref()).await,
        _ => Err(refused(
            "unsupported_grant_type",
            "use grant_type authorization_code or refresh_token",
        )),
    };
    outcome.unwrap_or_else(|r| r)
}

/// The form's parameters, each given at most once (RFC 6749 §3.1, §3.2: a repeated one
/// is refused, never "the last wins"); empty values count as absent. Parsed from the raw
/// body because a map-building extractor silently keeps one of two values.
struct Params(HashMap<String, String>);

impl Params {
    /// The parameters, or why the form is refused (`invalid_request`).
    fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Params, &'static str> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err("send the parameters as application/x-www-form-urlencoded");
        }
        let mut map = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(body) {
            if map.insert(name.into_owned(), value.into_owned()).is_some() {
                return Err("a parameter is given more than once; send each at most once");
            }
        }
        Ok(Params(map))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// A client that named itself, checked: a confidential one proved its secret.
struct Caller {
    id: String,
}

/// Who is asking (RFC 6749 §2.3): HTTP Basic or `client_secret` in the form for a
/// confidential client (exactly one of them), `client_id` alone for a public one, which
/// must send no secret. `None` when the request names no client: the grant's client then
/// decides (a public client may refresh without naming itself; a confidential one never).
async fn authenticate(
    sign_in: &SignIn,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Option<Caller>, Response> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(basic_credentials)
                .ok_or_else(|| unauthorized_client("send client credentials as HTTP Basic"))?,
        ),
    };
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if p.get("client_secret").is_some() {
                return Err(refused(
                    "invalid_request",
                    "use one client authentication method: HTTP Basic or client_secret in the \
                     form, not both",
                ));
            }
            if p.get("client_id").is_some_and(|named| named != id) {
                return Err(refused(
                    "invalid_request",
                    "client_id in the form is not the client of the HTTP Basic credentials",
                ));
            }
            (Some(id), Some(secret))
        }
        None => (
            p.get("client_id").map(str::to_string),
            p.get("client_secret").map(SecretString::from),
        ),
    };
    let Some(client_id) = client_id else {
        if secret.is_some() {
            return Err(refused(
                "invalid_request",
                "client_secret without client_id",
            ));
        }
        return Ok(None);
    };
    let public_secret = || {
        unauthorized_client(
            "this client is public (no client_secret was issued to it): send no client_secret",
        )
    };
    if super::clients::is_metadata_url(&client_id, true) {
        // A metadata-document client is public by definition; /authorize checked it.
        if secret.is_some() {
            return Err(public_secret());
        }
        return Ok(Some(Caller { id: client_id }));
    }
    let record = sign_in
        .store()
        .client(&client_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unauthorized_client("the client is not registered here; register again"))?;
    match (record.secret_hash, secret) {
        (Some(expected), Some(presented)) => {
            if TokenHash::of(presented.expose_secret()) != expected {
                return Err(unauthorized_client("wrong client_secret"));
            }
        }
        (Some(_), None) => {
            return Err(unauthorized_client(
                "this client must send its client_secret",
            ));
        }
        (None, Some(_)) => return Err(public_secret()),
        (None, None) => {}
    }
    Ok(Some(Caller { id: client_id }))
}

/// Whether the request may act for `grant`'s client: the client it authenticated as, or,
/// when it named none, a public client (RFC 6749 §6: a confidential client must
/// authenticate). Errors are the answers to send.
async fn may_act_for(
    sign_in: &SignIn,
    caller: Option<&Caller>,
    grant_client: &str,
) -> Result<(), Response> {
    match caller {
        Some(c) if c.id == grant_client => Ok(()),
        Some(_) => Err(refused(
            "invalid_grant",
            "the token was issued to another client",
        )),
        None if super::clients::is_metadata_url(grant_client, true) => Ok(()),
        None => {
            let record = sign_in
                .store()
                .client(grant_client)
                .await
                .map_err(unavailable)?;
            match record {
                Some(r) if r.secret_hash.is_none() => Ok(()),
                Some(_) => Err(unauthorized_client(
                    "this client must authenticate: send its client_id and client_secret",
                )),
                None => Err(unauthorized_client(
                    "send the client_id the token was issued to",
                )),
            }
        }
    }
}

/// `Basic base64(urlencoded id ":" urlencoded secret)`.
fn basic_credentials(value: &str) -> Option<(String, SecretString)> {
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
    // RFC 6749 §2.3.1: each part is application/x-www-form-urlencoded on its own, so a
    // `&` or `=` in it is data, not a separator.
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|v| v.into_owned())
    };
    Some((unescape(id)?, SecretString::from(unescape(secret)?)))
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
    caller: Option<&Caller>,
) -> Result<Response, Response> {
    let get = |k| p.get(k);
    let code = get("code").ok_or_else(|| refused("invalid_request", "code is missing"))?;
    let verifier = get("code_verifier").ok_or_else(|| {
        refused(
            "invalid_request",
            "code_verifier is missing (PKCE is required)",
        )
    })?;
    let client_id = caller
        .map(|c| c.id.as_str())
        .ok_or_else(|| refused("invalid_request", "client_id is missing"))?;
    let found = sign_in
        .store()
        .take_code(&TokenHash::of(code), now_s())
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
        created_at: now_s(),
        revoked: false,
    };
    sign_in
        .store()
        .put_grant(grant.clone())
        .await
        .map_err(unavailable)?;
    crate::metrics::sign_in_completed();
    let answer = issue(sign_in, &grant).await?;
    sign_in.audit_signed_in(&grant).await;
    Ok(answer)
}

/// A refresh (RFC 6749 §6) with rotation. The client is checked against the token's
/// grant before the token is spent, so a wrong client's attempt leaves it usable. The new
/// pair is made first and handed to the store, which spends the old token and stores the
/// pair in one atomic step: a repeat within the grace window gets this same pair back
/// (the store keeps it sealed for the window), so two racing refreshes leave the person
/// signed in; a repeat after the window revokes the grant (OAuth 2.1 §4.3.1).
async fn refresh_grant(
    sign_in: &SignIn,
    p: &Params,
    caller: Option<&Caller>,
) -> Result<Response, Response> {
    let presented = p
        .get("refresh_token")
        .ok_or_else(|| refused("invalid_request", "refresh_token is missing"))?;
    let hash = TokenHash::of(presented);
    let at = now_s();
    let unknown = || {
        refused(
            "invalid_grant",
            "the refresh token is unknown, expired or revoked",
        )
    };
    let grant = sign_in
        .store()
        .refresh_token_grant(&hash, at)
        .await
        .map_err(unavailable)?
        .ok_or_else(unknown)?;
    if !same_resource(&grant.resource, &sign_in.resource()) {
        // A store shared with another server holds its grants too.
        return Err(refused(
            "invalid_grant",
            "the refresh token was issued for another resource",
        ));
    }
    may_act_for(sign_in, caller, &grant.client_id).await?;
    let lifetime = sign_in.inner.token_lifetime;
    let next = Rotation {
        access: SecretString::from(random_token()),
        refresh: SecretString::from(random_token()),
        access_expires_at: at + lifetime,
        refresh_expires_at: at + REFRESH_TTL,
        grace: sign_in.inner.refresh_grace,
    };
    let used = sign_in
        .store()
        .use_refresh(&hash, at, next.clone())
        .await
        .map_err(unavailable)?;
    match used {
        RefreshUse::Fresh(_) => Ok(pair_answer(
            &TokenPair {
                access: next.access,
                refresh: next.refresh,
                access_expires_at: next.access_expires_at,
            },
            at,
        )),
        RefreshUse::Repeat(grant, pair) => {
            tracing::info!(grant = %grant.id, "a refresh token was used again within its grace window; the pair its first use issued is given back");
            Ok(pair_answer(&pair, at))
        }
        RefreshUse::Reused { grant_id } => {
            // OAuth 2.1 §4.3.1: a reused refresh token may be stolen; the store has
            // revoked its whole grant, so whoever holds it must sign in again.
            tracing::warn!(grant = %grant_id, "a refresh token was used twice; its sign-in is revoked");
            sign_in.audit_reused(&grant).await;
            Err(refused(
                "invalid_grant",
                "the refresh token was already used; sign in again",
            ))
        }
        RefreshUse::Unknown => Err(unknown()),
    }
}

/// A new access and refresh token for `grant` (after a code exchange).
async fn issue(sign_in: &SignIn, grant: &Grant) -> Result<Response, Response> {
    let (access, refresh) = (random_token(), random_token());
    let at = now_s();
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
    Ok(pair_answer(
        &TokenPair {
            access: SecretString::from(access),
            refresh: SecretString::from(refresh),
            access_expires_at: at + lifetime,
        },
        at,
    ))
}

/// The token answer (RFC 6749 §5.1) for `pair`.
fn pair_answer(pair: &TokenPair, at: i64) -> Response {
    (
        StatusCode::OK,
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(json!({
            "access_token": pair.access.expose_secret(),
            "token_type": "Bearer",
            "expires_in": (pair.access_expires_at - at).max(1),
            "refresh_token": pair.refresh.expose_secret(),
            "scope": SCOPE,
        })),
    )
        .into_response()
}

/// `POST /revoke` (RFC 7009): 200 whether the token was known or not, once the client is
/// checked (§2.1): a confidential client authenticates, and a token is revoked only by
/// the client it was issued to.
pub async fn revoke(State(sign_in): State<SignIn>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match Params::parse(&headers, &body) {
        Ok(p) => p,
        Err(why) => return refused("invalid_request", why),
    };
    let Some(token) = p.get("token") else {
        return refused("invalid_request", "token is missing");
    };
    let caller = match authenticate(&sign_in, &headers, &p).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let hash = TokenHash::of(token);
    let at = now_s();
    let store = sign_in.store();
    let grant = match store.token(&hash, at).await {
        Ok(Some((_, grant))) => Some(grant),
        Ok(None) => match store.refresh_token_grant(&hash, at).await {
            Ok(g) => g,
            Err(e) => return unavailable(e),
        },
        Err(e) => return unavailable(e),
    };
    let Some(grant) = grant else {
        return StatusCode::OK.into_response();
    };
    if let Err(r) = may_act_for(&sign_in, caller.as_ref(), &grant.client_id).await {
        return r;
    }
    match store.revoke_token(&hash).await {
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

#[cfg(test)]
mod tests {
    use base64::Engine;
    use secrecy::ExposeSecret;

    fn basic(raw: &str) -> Option<(String, String)> {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        super::basic_credentials(&value).map(|(id, s)| (id, s.expose_secret().to_string()))
    }

    #[test]
    fn basic_parts_are_form_decoded_each_on_its_own() {
        assert_eq!(basic("id:s%3Ac+d"), Some(("id".into(), "s:c d".into())));
        // A raw `&` or `=` is data, not a separator that would cut the secret short.
        assert_eq!(basic("id:a&b=c"), Some(("id".into(), "a&b=c".into())));
        assert_eq!(basic("a%26b:x"), Some(("a&b".into(), "x".into())));
        assert_eq!(basic("no-colon"), None);
    }
}
