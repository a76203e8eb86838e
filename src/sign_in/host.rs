//! On a loopback address without `--public-url`, clients may name this server
//! `localhost`, `127.0.0.1` or `[::1]` (with the port it listens on), and each expects
//! the resource and issuer to carry the name it used (Claude Code, Codex and the Python
//! SDK refuse a protected resource named otherwise). [`follow`] notes which of these
//! names a request used; [`super::SignIn::issuer`], `resource` and
//! `resource_metadata_url` answer with it. Other names keep the configured issuer (the
//! Host check refuses foreign ones anyway); with `--public-url` nothing follows.
//!
//! The portal's callback stays the one registered in the Bitrix24 application (the
//! portal refuses any other redirect address), so the browser comes back on the
//! configured name even when the sign-in began on another. The issuer that the callback
//! names to the client (`iss`, RFC 9207) must be the one the client discovered: the
//! name a sign-in began on is remembered by the portal `state` of its redirect, in
//! memory and bounded, for as long as a pending sign-in lives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use reqwest::Url;

use super::{CALLBACK_PATH, PENDING_TTL, SignIn};

/// Sign-ins begun on another loopback name than the configured one, remembered at once.
const MAX_REMEMBERED: usize = 10_000;

tokio::task_local! {
    /// Which of the sign-in's issuers the request being handled uses (0: the configured).
    static ISSUER: usize;
}

/// The index into the issuers of the request being handled (0 outside [`follow`]).
pub(super) fn current() -> usize {
    ISSUER.try_with(|i| *i).unwrap_or(0)
}

/// The issuers a loopback server answers with: the configured one first, then the same
/// address under the other loopback names (same scheme and port).
pub(super) fn issuers(configured: &str, follow: bool) -> Vec<String> {
    let mut all = vec![configured.to_string()];
    let Some(url) = Url::parse(configured).ok().filter(|_| follow) else {
        return all;
    };
    let Some(port) = url.port_or_known_default() else {
        return all;
    };
    for name in ["localhost", "127.0.0.1", "[::1]"] {
        let alias = format!("{}://{name}:{port}", url.scheme());
        if Url::parse(&alias).is_ok_and(|a| a.as_str() != url.as_str()) && !all.contains(&alias) {
            all.push(alias);
        }
    }
    all
}

/// Sign-ins (by the portal `state` of their redirect) begun on a non-default name.
#[derive(Default)]
pub(super) struct Begun {
    by_state: Mutex<HashMap<String, (usize, Instant)>>,
}

impl Begun {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (usize, Instant)>> {
        self.by_state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, state: String, issuer: usize) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= MAX_REMEMBERED {
            map.retain(|_, (_, until)| *until > now);
        }
        // Full of live sign-ins: this one's callback names the configured issuer.
        if map.len() < MAX_REMEMBERED {
            let ttl = Duration::from_secs(PENDING_TTL.unsigned_abs());
            map.insert(state, (issuer, now + ttl));
        }
    }

    fn take(&self, state: &str) -> Option<usize> {
        let (issuer, until) = self.lock().remove(state)?;
        (until > Instant::now()).then_some(issuer)
    }
}

/// axum middleware around the sign-in and protected routes: the loopback name the
/// request used picks the issuer its answers carry.
pub async fn follow(State(sign_in): State<SignIn>, request: Request, next: Next) -> Response {
    let inner = &sign_in.inner;
    if inner.issuers.len() < 2 {
        return next.run(request).await;
    }
    let mut issuer = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|host| {
            inner.issuers.iter().position(|i| {
                i.split_once("://")
                    .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
            })
        })
        .unwrap_or(0);
    let callback = request.uri().path() == CALLBACK_PATH;
    if callback
        && let Some(state) = query_value(request.uri().query(), "state")
        && let Some(begun) = inner.begun.take(&state)
    {
        issuer = begun;
    }
    let response = ISSUER.scope(issuer, next.run(request)).await;
    if issuer != 0 && !callback && response.status().is_redirection() {
        let to_portal = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| Url::parse(l).ok())
            .filter(|l| {
                l.query_pairs()
                    .any(|(k, v)| k == "redirect_uri" && v == sign_in.callback_url())
            });
        if let Some(state) = to_portal.and_then(|l| query_value(l.query(), "state")) {
            inner.begun.remember(state, issuer);
        }
    }
    response
}

fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_issuers_cover_the_three_names_on_the_same_port() {
        assert_eq!(
            issuers("http://127.0.0.1:8000", true),
            [
                "http://127.0.0.1:8000",
                "http://localhost:8000",
                "http://[::1]:8000"
            ]
        );
        assert_eq!(
            issuers("http://[::1]:9", true),
            ["http://[::1]:9", "http://localhost:9", "http://127.0.0.1:9"]
        );
        assert_eq!(
            issuers("http://127.0.0.1:8000", false),
            ["http://127.0.0.1:8000"]
        );
    }

    #[test]
    fn a_begun_sign_in_is_taken_once() {
        let begun = Begun::default();
        begun.remember("s1".into(), 2);
        assert_eq!(begun.take("s1"), Some(2));
        assert_eq!(begun.take("s1"), None);
        assert_eq!(begun.take("unknown"), None);
    }
}
