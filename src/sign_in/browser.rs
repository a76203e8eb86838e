//! What the browser's sign-in requests share, kept apart from the handlers so that
//! `/authorize`, the consent page and the portal's callback all use it without importing
//! each other: parameters given once, the way back to the client (an OAuth error
//! redirect with `state` and `iss`), and the step that sends the browser to the portal.

use std::collections::HashMap;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use reqwest::Url;

use super::secret::random_token;
use super::{PENDING_TTL, SignIn, page};
use crate::clock::now_s;
use crate::store::{PendingAuth, StoreError, TokenHash};

/// Ends the state sent to the portal when the person approved the client on the page
/// just now, so that the callback remembers the approval in this browser. Part of the
/// hashed state: nobody can add it to a state without losing the pending sign-in.
pub(super) const CONSENTED: &str = ".consented";

/// Query or form parameters, each at most once; empty values count as absent.
pub(super) struct Params(HashMap<String, String>);

/// The names this server reads, the only ones a page may repeat back.
const KNOWN: [&str; 12] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
    "scope",
    "resource",
    "code",
    "consent",
    "decision",
    "member_id",
];

/// A parameter given more than once (its name when it is one this server reads).
pub(super) struct Repeated(Option<&'static str>);

impl Repeated {
    /// The page refusing the request (`invalid_request`).
    pub(super) fn page(&self) -> Response {
        let which = self.0.map_or_else(
            || "A parameter".to_string(),
            |n| format!("The parameter {n}"),
        );
        page::error(
            StatusCode::BAD_REQUEST,
            "Sign-in request not valid",
            &format!(
                "{which} is given more than once (invalid_request), so the sign-in stops \
                 here. Start the sign-in again from your MCP client."
            ),
        )
    }
}

impl Params {
    /// The pairs of `raw` (`application/x-www-form-urlencoded`); `Err` when a name comes
    /// twice.
    pub(super) fn parse(raw: &[u8]) -> Result<Params, Repeated> {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if map.contains_key(k.as_ref()) {
                return Err(Repeated(KNOWN.iter().find(|n| **n == k).copied()));
            }
            map.insert(k.into_owned(), v.into_owned());
        }
        Ok(Params(map))
    }

    /// The value of `k`, unless absent or empty.
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Stores `pending` under a fresh state and sends the browser to the portal's sign-in
/// page; the person has approved the client (`consented_now`: on the page just now).
pub(super) async fn to_portal(
    sign_in: &SignIn,
    mut pending: PendingAuth,
    consented_now: bool,
) -> Response {
    let mut ours = random_token();
    if consented_now {
        ours.push_str(CONSENTED);
    }
    pending.state = TokenHash::of(&ours);
    pending.expires_at = now_s() + PENDING_TTL;
    let back = Back::to(sign_in, &pending);
    match sign_in.store().put_pending(pending, now_s()).await {
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

/// Where the browser goes back to, and what it carries.
pub(super) struct Back {
    pub(super) redirect_uri: String,
    pub(super) state: Option<String>,
    pub(super) issuer: String,
}

impl Back {
    /// Back to the client of `pending`.
    pub(super) fn to(sign_in: &SignIn, pending: &PendingAuth) -> Back {
        Back {
            redirect_uri: pending.redirect_uri.clone(),
            state: pending.client_state.clone(),
            issuer: sign_in.issuer().to_string(),
        }
    }

    /// An OAuth error redirect (RFC 6749 §4.1.2.1).
    pub(super) fn error(&self, code: &str, description: &str) -> Response {
        self.with(&[("error", code), ("error_description", description)])
    }

    /// Back to the client with `pairs` (and `state`, `iss`) in the query.
    pub(super) fn with(&self, pairs: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
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
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            // RFC 9207: lets the client check the answer comes from the server it asked.
            query.append_pair("iss", &self.issuer);
        }
        redirect(url.as_str())
    }
}

fn redirect(to: &str) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, to),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response()
}

pub(super) fn store_page(e: &StoreError) -> Response {
    tracing::warn!("sign-in store error: {e}");
    page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable",
        "The server cannot reach its sign-in store right now. Try again in a minute.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(Params::parse(b"a=1&b=2").is_ok());
        assert!(Params::parse(b"a=1&a=2").is_err());
        assert!(Params::parse(b"state=1&state=").is_err());
        let p = Params::parse(b"a=&b=x%20y").unwrap_or_else(|_| panic!("parses"));
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y"));
    }
}
