//! OAuth 2.0: per-person tokens, access-token validity for portal calls, sign-in codes and
//! the `/oauth/token/` endpoint (refresh and authorization-code grants, docs/bitrix24-api.md#oauth).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Settings;
use super::reply::Reply;
use super::time;

/// The portal's `member_id`, the same in redirects and token answers.
pub(crate) const MEMBER_ID: &str = "sandbox0000000000000000000000000";

/// The grant of the configured identity (`access_token` + `OAuthApp::refresh_token`).
const CONFIGURED_GRANT: u64 = 0;

/// Used when no OAuth app sets a lifetime (tokens then never expire on calls anyway).
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

struct Access {
    user: u64,
    /// `None` = never; used when no OAuth app is configured.
    expiry: Option<Instant>,
}

/// One authorization of one person: the refresh token chain a sign-in (or the
/// configuration) started. A person who signs in twice holds two grants.
#[derive(Clone, Copy)]
struct Grant {
    id: u64,
    user: u64,
}

struct Code {
    user: u64,
    expiry: Instant,
}

/// A freshly issued pair.
pub(crate) struct Issued {
    pub(crate) access: String,
    pub(crate) refresh: String,
    pub(crate) ttl: Duration,
    pub(crate) user: u64,
}

/// Issued tokens, per person. Old access tokens stay valid until they expire (as with real
/// OAuth servers); a refresh token dies as soon as it is used (rotation, docs/bitrix24-api.md#token-refresh).
pub(crate) struct TokenStore {
    access: HashMap<String, Access>,
    refresh: HashMap<String, Grant>,
    codes: HashMap<String, Code>,
    ttl: Option<Duration>,
    configured_user: u64,
    /// The configured grant's newest tokens (what `Sandbox::access_token` reports).
    current_access: Option<String>,
    current_refresh: Option<String>,
    refresh_counts: BTreeMap<u64, u32>,
    next_grant: u64,
}

/// Outcome of checking the `auth` value of a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// The token is live; calls run as this user.
    Valid(u64),
    Expired,
    Unknown,
}

impl TokenStore {
    /// `access` and the refresh token of `oauth` belong to `configured_user`.
    pub(crate) fn new(
        configured_user: u64,
        access: Option<String>,
        oauth: Option<(String, Duration)>,
        now: Instant,
    ) -> TokenStore {
        let ttl = oauth.as_ref().map(|(_, ttl)| *ttl);
        let mut tokens = HashMap::new();
        if let Some(token) = &access {
            tokens.insert(
                token.clone(),
                Access {
                    user: configured_user,
                    expiry: ttl.map(|t| now + t),
                },
            );
        }
        let mut refresh = HashMap::new();
        let current_refresh = oauth.map(|(token, _)| token);
        if let Some(token) = &current_refresh {
            let grant = Grant {
                id: CONFIGURED_GRANT,
                user: configured_user,
            };
            refresh.insert(token.clone(), grant);
        }
        TokenStore {
            access: tokens,
            refresh,
            codes: HashMap::new(),
            ttl,
            configured_user,
            current_access: access,
            current_refresh,
            refresh_counts: BTreeMap::new(),
            next_grant: CONFIGURED_GRANT + 1,
        }
    }

    pub(crate) fn check(&self, token: &str, now: Instant) -> TokenCheck {
        match self.access.get(token) {
            None => TokenCheck::Unknown,
            Some(Access {
                expiry: Some(expiry),
                ..
            }) if now >= *expiry => TokenCheck::Expired,
            Some(a) => TokenCheck::Valid(a.user),
        }
    }

    pub(crate) fn current_access(&self) -> Option<String> {
        self.current_access.clone()
    }

    pub(crate) fn current_refresh(&self) -> Option<String> {
        self.current_refresh.clone()
    }

    /// Successful refreshes, everyone together.
    pub(crate) fn refresh_count(&self) -> u32 {
        self.refresh_counts.values().sum()
    }

    /// Successful refreshes per person (people who never refreshed are absent).
    pub(crate) fn refresh_counts(&self) -> &BTreeMap<u64, u32> {
        &self.refresh_counts
    }

    /// Makes the access tokens issued so far expire now: `user`'s, or everyone's.
    pub(crate) fn expire(&mut self, user: Option<u64>, now: Instant) {
        for access in self.access.values_mut() {
            if user.is_none_or(|u| u == access.user) {
                access.expiry = Some(now);
            }
        }
    }

    /// Ends every grant of `user`: refresh tokens, access tokens and unused codes die.
    pub(crate) fn revoke(&mut self, user: u64) {
        self.access.retain(|_, a| a.user != user);
        self.refresh.retain(|_, g| g.user != user);
        self.codes.retain(|_, c| c.user != user);
        if user == self.configured_user {
            self.current_access = None;
            self.current_refresh = None;
        }
    }

    /// A sign-in code for `user`, valid for `ttl` and one exchange.
    pub(crate) fn issue_code(&mut self, user: u64, ttl: Duration, now: Instant) -> String {
        // Expired codes can never be exchanged; dropping them keeps the map bounded.
        self.codes.retain(|_, c| c.expiry > now);
        let code = super::random_token(32);
        self.codes.insert(
            code.clone(),
            Code {
                user,
                expiry: now + ttl,
            },
        );
        code
    }

    /// Exchanges a code for a new grant. A code is gone once presented, even if expired.
    pub(crate) fn redeem_code(&mut self, code: &str, now: Instant) -> Option<Issued> {
        let found = self.codes.remove(code)?;
        if now >= found.expiry {
            return None;
        }
        let grant = Grant {
            id: self.next_grant,
            user: found.user,
        };
        self.next_grant += 1;
        Some(self.issue(grant, now))
    }

    /// Rotates the grant `presented` belongs to; `None` for unknown or used tokens.
    pub(crate) fn refresh(&mut self, presented: &str, now: Instant) -> Option<Issued> {
        let grant = self.refresh.remove(presented)?;
        *self.refresh_counts.entry(grant.user).or_default() += 1;
        Some(self.issue(grant, now))
    }

    fn issue(&mut self, grant: Grant, now: Instant) -> Issued {
        let ttl = self.ttl.unwrap_or(DEFAULT_TTL);
        let access = super::random_token(32);
        let refresh = super::random_token(32);
        self.access.insert(
            access.clone(),
            Access {
                user: grant.user,
                expiry: Some(now + ttl),
            },
        );
        self.refresh.insert(refresh.clone(), grant);
        if grant.id == CONFIGURED_GRANT {
            self.current_access = Some(access.clone());
            self.current_refresh = Some(refresh.clone());
        }
        Issued {
            access,
            refresh,
            ttl,
            user: grant.user,
        }
    }
}

/// `/oauth/token/`: `grant_type=refresh_token` or `authorization_code`. Errors use the
/// OAuth-server shape `{"error","error_description"}`: another grant type => 400
/// `invalid_request`, bad client id/secret => 401 `invalid_client` (status [INFERRED] in
/// docs/bitrix24-api.md#oauth-errors), unknown or used refresh token, or unknown, used or expired code => 400
/// `invalid_grant`.
///
/// `server_endpoint` and `client_endpoint` are both `{base_url}/rest/`: the sandbox is the
/// portal and the OAuth server at once, and clients derive the OAuth host from
/// `server_endpoint`.
pub(crate) fn token_endpoint(
    settings: &Settings,
    tokens: &mut TokenStore,
    params: &HashMap<String, String>,
    now: Instant,
) -> Reply {
    let Some(app) = &settings.oauth else {
        return Reply::raw(404, "text/html", b"<h1>404 Not Found</h1>".to_vec());
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let (by_code, presented) = match get("grant_type") {
        "refresh_token" => (false, get("refresh_token")),
        "authorization_code" => (true, get("code")),
        _ => return Reply::v1_error(400, "invalid_request", "Unsupported grant_type"),
    };
    if get("client_id") != app.client_id || get("client_secret") != app.client_secret {
        return Reply::v1_error(401, "invalid_client", "Invalid client credentials");
    }
    let issued = match (presented.is_empty(), by_code) {
        (true, _) => None,
        (false, true) => tokens.redeem_code(presented, now),
        (false, false) => tokens.refresh(presented, now),
    };
    let Some(issued) = issued else {
        return Reply::v1_error(400, "invalid_grant", "Invalid grant");
    };
    let base = settings.base_url();
    Reply::json(
        200,
        &json!({
            "access_token": issued.access,
            "client_endpoint": format!("{base}/rest/"),
            "domain": settings.addr.to_string(),
            "expires": time::now_secs() + i64::try_from(issued.ttl.as_secs()).unwrap_or(0),
            "expires_in": issued.ttl.as_secs(),
            "member_id": MEMBER_ID,
            "refresh_token": issued.refresh,
            "scope": settings.scopes.join(","),
            "server_endpoint": format!("{base}/rest/"),
            "status": "F",
            "user_id": issued.user,
        }),
    )
    .with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(t0: Instant, ttl: u64) -> TokenStore {
        TokenStore::new(
            1,
            Some("tok".into()),
            Some(("ref".into(), Duration::from_secs(ttl))),
            t0,
        )
    }

    #[test]
    fn expiry_and_unknown_tokens() {
        let t0 = Instant::now();
        let store = store(t0, 10);
        assert_eq!(store.check("tok", t0), TokenCheck::Valid(1));
        assert_eq!(
            store.check("tok", t0 + Duration::from_secs(10)),
            TokenCheck::Expired
        );
        assert_eq!(store.check("other", t0), TokenCheck::Unknown);
        let forever = TokenStore::new(7, Some("tok".into()), None, t0);
        assert_eq!(
            forever.check("tok", t0 + Duration::from_secs(1_000_000)),
            TokenCheck::Valid(7)
        );
    }

    #[test]
    fn expire_all_expires_issued_tokens_only() {
        let t0 = Instant::now();
        let mut store = store(t0, 3600);
        store.expire(None, t0);
        assert_eq!(store.check("tok", t0), TokenCheck::Expired);
        let fresh = store.refresh("ref", t0).expect("refreshed");
        assert_eq!(store.check(&fresh.access, t0), TokenCheck::Valid(1));
    }

    #[test]
    fn codes_live_thirty_seconds_once() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut store = store(t0, 3600);
        let code = store.issue_code(2, ttl, t0);
        let late = store.issue_code(2, ttl, t0);
        let issued = store
            .redeem_code(&code, t0 + Duration::from_secs(29))
            .expect("a live code");
        assert_eq!(issued.user, 2);
        assert_eq!(store.check(&issued.access, t0), TokenCheck::Valid(2));
        assert!(store.redeem_code(&code, t0).is_none(), "single use");
        assert!(store.redeem_code(&late, t0 + ttl).is_none(), "expired");
        assert!(
            store.redeem_code(&late, t0).is_none(),
            "gone once presented"
        );
        // A sign-in grant rotates on its own; the configured pair is untouched.
        assert_eq!(store.current_refresh().as_deref(), Some("ref"));
        let next = store.refresh(&issued.refresh, t0).expect("rotated");
        assert!(store.refresh(&issued.refresh, t0).is_none());
        assert_eq!(store.check(&next.access, t0), TokenCheck::Valid(2));
        assert_eq!(store.current_access().as_deref(), Some("tok"));
        assert_eq!(store.refresh_counts().get(&2), Some(&1));
        assert_eq!(store.refresh_count(), 1);
    }

    #[test]
    fn expire_and_revoke_one_person() {
        let t0 = Instant::now();
        let mut store = store(t0, 3600);
        let code = store.issue_code(2, Duration::from_secs(30), t0);
        let two = store.redeem_code(&code, t0).expect("signed in");
        store.expire(Some(2), t0);
        assert_eq!(store.check(&two.access, t0), TokenCheck::Expired);
        assert_eq!(store.check("tok", t0), TokenCheck::Valid(1));
        store.revoke(2);
        assert_eq!(store.check(&two.access, t0), TokenCheck::Unknown);
        assert!(store.refresh(&two.refresh, t0).is_none());
        assert!(store.refresh("ref", t0).is_some(), "user 1 keeps the grant");
        store.revoke(1);
        assert_eq!(store.current_access(), None);
        assert_eq!(store.current_refresh(), None);
    }
}
