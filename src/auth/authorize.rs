//! The browser's part of sign-in: `/authorize` checks the client's request and sends
//! the person to the portal's sign-in page; `/oauth/callback` takes the portal's code,
//! exchanges it for the person's Bitrix24 tokens, and sends the browser back to the
//! client with this server's own one-time code.
//!
//! Until the client and its redirect URI are known to be genuine, errors are pages (a
//! redirect to an unchecked URI would make this server an open redirector); after that,
//! errors go back to the client as OAuth error redirects (RFC 6749 §4.1.2.1).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use reqwest::Url;

use super::clients::{ClientError, redirect_uri_matches};
use super::secret::{is_s256_challenge, random_token};
use super::{CODE_TTL, PENDING_TTL, SignIn, now, page};
use crate::bitrix::CallError;
use crate::bitrix::grant::{self, GrantRequest};
use crate::store::{AuthCode, BitrixTokens, PendingAuth, Person, StoreError, TokenHash};

type Params = Query<HashMap<String, String>>;

/// `GET /authorize`.
pub async fn authorize(State(sign_in): State<SignIn>, Query(q): Params) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in request without a client",
            "The request names no client_id. Start the sign-in from your MCP client.",
        );
    };
    let client = match sign_in.inner.clients.find(client_id).await {
        Ok(c) => c,
        Err(ClientError::Unknown(why)) => {
            return page::error(StatusCode::BAD_REQUEST, "Unknown client", &why);
        }
        Err(ClientError::Store(e)) => return store_page(&e),
    };
    let redirect_uri = match get("redirect_uri") {
        Some(r) if redirect_uri_matches(&client.redirect_uris, r) => r.to_string(),
        Some(_) => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "Redirect address not registered",
                "The redirect_uri of this request is not one the client registered, so the sign-in stops here. \
                 Remove this server from your MCP client and add it again.",
            );
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "Redirect address missing",
                "The request names no redirect_uri and the client registered several.",
            );
        }
    };
    let client_state = get("state").map(str::to_string);
    let back = Back {
        redirect_uri: &redirect_uri,
        state: client_state.as_deref(),
        issuer: sign_in.issuer(),
    };
    let client_state = client_state.clone();
    if get("response_type") != Some("code") {
        return back.error(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (Some(c), Some("S256")) if is_s256_challenge(c) => c.to_string(),
        (Some(_), Some("S256")) => {
            return back.error("invalid_request", "code_challenge is not an S256 challenge");
        }
        _ => {
            return back.error(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            );
        }
    };
    let resource = sign_in.resource();
    if let Some(asked) = get("resource")
        && !same_resource(asked, &resource)
    {
        return back.error(
            "invalid_target",
            &format!("this server issues tokens only for {resource}"),
        );
    }
    let ours = random_token();
    let pending = PendingAuth {
        state: TokenHash::of(&ours),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        code_challenge: challenge,
        client_state,
        resource,
        scope: get("scope").map(str::to_string),
        expires_at: now() + PENDING_TTL,
    };
    match sign_in.store().put_pending(pending, now()).await {
        Ok(()) => {}
        Err(StoreError::Full) => {
            return back.error(
                "temporarily_unavailable",
                "too many sign-ins in progress; try again in a few minutes",
            );
        }
        Err(e) => return store_page(&e),
    }
    let portal_page = sign_in.inner.portal.authorize_url(
        &sign_in.inner.app.client_id,
        &ours,
        &sign_in.callback_url(),
    );
    redirect(portal_page.as_str())
}

/// `GET /oauth/callback`: where the portal sends the person back.
pub async fn callback(State(sign_in): State<SignIn>, Query(q): Params) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(state) = get("state") else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in answer without a state",
            "The portal's answer does not belong to a sign-in started here. Start again from your MCP client.",
        );
    };
    let pending = match sign_in
        .store()
        .take_pending(&TokenHash::of(state), now())
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in link has expired or was already used. Start the sign-in again from your MCP client.",
            );
        }
        Err(e) => return store_page(&e),
    };
    let back = Back {
        redirect_uri: &pending.redirect_uri,
        state: pending.client_state.as_deref(),
        issuer: sign_in.issuer(),
    };
    let Some(code) = get("code") else {
        return back.error(
            "access_denied",
            "the portal did not sign the person in (no code came back)",
        );
    };
    let url = grant::token_url(sign_in.inner.oauth_url.as_ref(), None);
    let issued = match grant::exchange(
        &sign_in.inner.pool,
        url,
        &sign_in.inner.app,
        GrantRequest::Code(code),
    )
    .await
    {
        Ok(i) => i,
        Err(e) => {
            let (code, detail) = match &e {
                CallError::OAuth { code, detail } => (code.as_str(), detail.as_str()),
                _ => ("error", "unexpected failure"),
            };
            tracing::warn!(
                error = code,
                "exchanging the portal's sign-in code failed: {detail}"
            );
            return back.error(
                "access_denied",
                &format!("the Bitrix24 OAuth server refused the sign-in code ({code})"),
            );
        }
    };
    let Some(user_id) = issued.user_id else {
        return back.error("server_error", "the Bitrix24 token answer names no user");
    };
    if let Some(endpoint) = issued.client_endpoint.as_deref() {
        let host = Url::parse(endpoint).ok().and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        });
        if host.as_deref() != Some(sign_in.inner.portal.host().as_str()) {
            tracing::warn!(
                user_id,
                "a person signed in to another portal than the one served"
            );
            return back.error(
                "access_denied",
                &format!(
                    "you signed in to another Bitrix24 portal; this server works with {}",
                    sign_in.inner.portal.origin()
                ),
            );
        }
    }
    let member_id = issued
        .member_id
        .clone()
        .or_else(|| get("member_id").map(str::to_string))
        .unwrap_or_default();
    let at = now();
    let person = Person {
        member_id: member_id.clone(),
        user_id,
        domain: get("domain")
            .map(str::to_string)
            .unwrap_or_else(|| sign_in.inner.portal.host()),
        tokens: BitrixTokens {
            access: issued.access_token,
            refresh: issued.refresh_token,
            expires_at: issued.expires_at.unwrap_or(at + 3600),
            server_endpoint: issued.server_endpoint,
            client_endpoint: issued.client_endpoint,
            scope: issued.scope,
        },
        last_used_at: at,
        created_at: at,
    };
    if let Err(e) = sign_in.store().put_person(person).await {
        return store_page(&e);
    }
    sign_in.inner.people.forget(&member_id, user_id);
    let ours = random_token();
    let code = AuthCode {
        code: TokenHash::of(&ours),
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        resource: pending.resource.clone(),
        scope: pending.scope.clone(),
        user_id,
        member_id,
        expires_at: at + CODE_TTL,
    };
    if let Err(e) = sign_in.store().put_code(code).await {
        return store_page(&e);
    }
    tracing::info!(user_id, client = %pending.client_id, "person signed in");
    back.with(&[("code", &ours)])
}

/// Where the browser goes back to, and what it carries.
struct Back<'a> {
    redirect_uri: &'a str,
    state: Option<&'a str>,
    issuer: &'a str,
}

impl Back<'_> {
    fn error(&self, code: &str, description: &str) -> Response {
        self.with(&[("error", code), ("error_description", description)])
    }

    fn with(&self, pairs: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(self.redirect_uri) else {
            return page::error(
                StatusCode::BAD_REQUEST,
                "Redirect address unusable",
                "The client's redirect address is not a URL.",
            );
        };
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in pairs {
                query.append_pair(k, v);
            }
            if let Some(state) = self.state {
                query.append_pair("state", state);
            }
            // RFC 9207: lets the client check the answer comes from the server it asked.
            query.append_pair("iss", self.issuer);
        }
        redirect(url.as_str())
    }
}

fn redirect(to: &str) -> Response {
    (
        StatusCode::FOUND,
        [(header::LOCATION, to), (header::CACHE_CONTROL, "no-store")],
    )
        .into_response()
}

fn store_page(e: &StoreError) -> Response {
    tracing::warn!("sign-in store error: {e}");
    page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable",
        "The server cannot reach its sign-in store right now. Try again in a minute.",
    )
}

/// Whether a client's `resource` names ours (a trailing slash is tolerated).
pub(super) fn same_resource(asked: &str, ours: &str) -> bool {
    asked.trim_end_matches('/') == ours.trim_end_matches('/')
}
