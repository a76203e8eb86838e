//! The browser's part of sign-in: `/authorize` checks the client's request, asks the
//! person's consent (`consent.rs`) and sends them to the portal's sign-in page;
//! `/oauth/callback` takes the portal's code, exchanges it for the person's Bitrix24
//! tokens, and sends the browser back to the client with this server's own one-time code.
//!
//! Until the client is known to be genuine AND the person has approved it (on the page,
//! or earlier in this browser), every error is a page: a redirect would make this server
//! an open redirector for anyone who registers a redirect URI. After that, errors go back
//! to the client as OAuth error redirects (RFC 6749 §4.1.2.1).
//!
//! Queries are read raw (not into a map where the last value wins): a parameter given
//! twice is refused (RFC 6749 §3.1); the parameters, the way back to the client and the
//! step to the portal live in `browser.rs`, shared with the consent page.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use reqwest::Url;

use super::approval::{Approval, approval_cookie, set_cookie};
use super::browser::{Back, CONSENTED, Params, store_page, to_portal};
use super::clients::{ClientError, redirect_uri_matches};
use super::secret::{is_s256_challenge, random_token};
use super::{CODE_TTL, SignIn, consent, page};
use crate::bitrix::CallError;
use crate::bitrix::grant::{self, GrantRequest};
use crate::clock::now_s;
use crate::store::{AuthCode, BitrixTokens, PendingAuth, Person, TokenHash};

/// The longest `state` a client may send (real clients send 32 to 64 characters): it is
/// kept with every pending sign-in, so its size bounds what a flood of them can hold.
const MAX_CLIENT_STATE: usize = 1024;

/// `GET /authorize`.
pub async fn authorize(
    State(sign_in): State<SignIn>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = match Params::parse(raw.unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(repeated) => return repeated.page(),
    };
    let Some(client_id) = q.get("client_id") else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in request without a client",
            "The request names no client_id. Start the sign-in from your MCP client.",
        );
    };
    let client = match sign_in.inner.clients.find(client_id).await {
        Ok(c) => c,
        Err(ClientError::Unknown(why)) => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "Unknown client",
                &without_client_id(&why, client_id),
            );
        }
        Err(ClientError::Store(e)) => return store_page(&e),
    };
    let redirect_uri = match q.get("redirect_uri") {
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
    let approved = consent::remembered(&sign_in, &headers, &client.client_id).await;
    let checked = check(&sign_in, &q, client.client_id.clone(), redirect_uri);
    checked.is_ok().then(crate::metrics::sign_in_started);
    match (checked, approved) {
        (Ok(pending), true) => to_portal(&sign_in, pending, false).await,
        (Ok(pending), false) => consent::ask(&sign_in, &headers, &client, pending).await,
        (Err(refused), true) => refused.back.error(refused.code, &refused.why),
        // Not yet approved: the redirect URI, though registered, may be anyone's.
        (Err(refused), false) => page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in request not valid",
            &format!(
                "Your MCP client sent a sign-in request this server cannot take: {} ({}). \
                 Update the client, or tell its makers.",
                refused.why, refused.code
            ),
        ),
    }
}

/// A request refused after its client and redirect URI were found genuine.
struct Refused {
    back: Back,
    code: &'static str,
    why: String,
}

/// The rest of the request (response type, PKCE, resource) as the pending sign-in it
/// asks for (its `state` and expiry are set where it is stored).
fn check(
    sign_in: &SignIn,
    q: &Params,
    client_id: String,
    redirect_uri: String,
) -> Result<PendingAuth, Refused> {
    let client_state = q.get("state").map(str::to_string);
    let refuse = |code: &'static str, why: String| Refused {
        back: Back {
            redirect_uri: redirect_uri.clone(),
            state: client_state.clone(),
            issuer: sign_in.issuer().to_string(),
        },
        code,
        why,
    };
    if client_state
        .as_ref()
        .is_some_and(|s| s.len() > MAX_CLIENT_STATE)
    {
        // Not echoed back: a state this long is not a client's, and it would ride along
        // in every pending sign-in the store keeps.
        let mut refused = refuse(
            "invalid_request",
            format!("state is longer than {MAX_CLIENT_STATE} bytes"),
        );
        refused.back.state = None;
        return Err(refused);
    }
    if q.get("response_type") != Some("code") {
        return Err(refuse(
            "unsupported_response_type",
            "only response_type=code is supported".into(),
        ));
    }
    let code_challenge = match (q.get("code_challenge"), q.get("code_challenge_method")) {
        (Some(c), Some("S256")) if is_s256_challenge(c) => c.to_string(),
        (Some(_), Some("S256")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge is not an S256 challenge".into(),
            ));
        }
        _ => {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256".into(),
            ));
        }
    };
    let resource = sign_in.resource();
    if let Some(asked) = q.get("resource")
        && !same_resource(asked, &resource)
    {
        return Err(refuse(
            "invalid_target",
            format!("this server issues tokens only for {resource}"),
        ));
    }
    Ok(PendingAuth {
        state: TokenHash::of(""),
        client_id,
        redirect_uri,
        code_challenge,
        client_state,
        resource,
        scope: q.get("scope").map(str::to_string),
        expires_at: 0,
    })
}

/// `GET /oauth/callback`: where the portal sends the person back.
pub async fn callback(State(sign_in): State<SignIn>, RawQuery(raw): RawQuery) -> Response {
    let q = match Params::parse(raw.unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(repeated) => return repeated.page(),
    };
    let Some(state) = q.get("state") else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in answer without a state",
            "The portal's answer does not belong to a sign-in started here. Start again from your MCP client.",
        );
    };
    let pending = match sign_in
        .store()
        .take_pending(&TokenHash::of(state), now_s())
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
    let consented_now = state.ends_with(CONSENTED);
    let back = Back::to(&sign_in, &pending);
    let Some(code) = q.get("code") else {
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
                error = ?code,
                detail = ?detail,
                "exchanging the portal's sign-in code failed"
            );
            return back.error(
                "access_denied",
                "the Bitrix24 OAuth server refused the sign-in code",
            );
        }
    };
    let Some(user_id) = issued.user_id else {
        return back.error("server_error", "the Bitrix24 token answer names no user");
    };
    // The person's portal comes from the token answer only, never from the browser's
    // query string (which anyone can edit on the way back).
    let portal_host = sign_in.inner.portal.host();
    if let Some(endpoint) = issued.client_endpoint.as_deref()
        && endpoint_host(endpoint).as_deref() != Some(portal_host.as_str())
    {
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
    let Some(member_id) = issued.member_id.clone().filter(|m| !m.is_empty()) else {
        tracing::warn!(
            user_id,
            "the Bitrix24 token answer names no member_id; sign-in refused"
        );
        return back.error(
            "server_error",
            "the Bitrix24 token answer names no portal (member_id)",
        );
    };
    let at = now_s();
    let person = Person {
        member_id: member_id.clone(),
        user_id,
        domain: portal_host,
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
        member_id: member_id.clone(),
        expires_at: at + CODE_TTL,
    };
    if let Err(e) = sign_in.store().put_code(code).await {
        return store_page(&e);
    }
    tracing::info!(user_id, client = ?pending.client_id, "person signed in");
    let mut answer = back.with(&[("code", &ours)]);
    let max_age = sign_in.inner.consent_max_age;
    if consented_now && max_age > 0 {
        // Remembered from now: the next sign-in of this client in this browser skips the
        // page while the approval is younger than --consent-max-age and the person is
        // still signed in since then.
        let approval = Approval {
            member_id,
            user_id,
            issued_at: at,
        };
        let secure = sign_in.issuer().starts_with("https:");
        let cookie = set_cookie(
            &approval_cookie(&pending.client_id, secure),
            &approval.seal(&sign_in.inner.consent_key, &pending.client_id),
            max_age,
            secure,
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            answer.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    answer
}

/// `host[:port]` of a Bitrix24 endpoint URL.
fn endpoint_host(endpoint: &str) -> Option<String> {
    Url::parse(endpoint).ok().and_then(|u| {
        u.host_str().map(|h| match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    })
}

/// `why` with the stranger-chosen client id left out, so an error page cannot be made to
/// say what an attacker wrote (a "client id" can be any text).
fn without_client_id(why: &str, client_id: &str) -> String {
    // The client's message may hold the id whole or cut short: the longest beginning of
    // it found in the message goes (ids under 8 characters are too short to say much).
    let chars: Vec<char> = client_id.chars().collect();
    let longest = chars.len().min(why.chars().count());
    for n in (8..=longest).rev() {
        let part: String = chars[..n].iter().collect();
        if why.contains(&part) {
            return why.replace(&part, "(the client id)");
        }
    }
    why.to_string()
}

/// Whether a client's `resource` names ours (a trailing slash is tolerated).
pub(super) fn same_resource(asked: &str, ours: &str) -> bool {
    asked.trim_end_matches('/') == ours.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_leave_the_client_id_out() {
        let id =
            "x`. SECURITY NOTICE: your session was suspended. Restore it at https://evil.example";
        let why = format!("the client id `{}` is not registered here", &id[..70]);
        let shown = without_client_id(&why, id);
        assert!(!shown.contains("SECURITY"), "{shown}");
        assert!(shown.contains("not registered here"), "{shown}");
    }
}
