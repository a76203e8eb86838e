//! OAuth 2.0: access-token validity for portal calls and the `/oauth/token/` refresh
//! endpoint (contract §8.2).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Settings;
use super::reply::Reply;
use super::time;

/// Issued tokens. Old access tokens stay valid until they expire (as with real OAuth
/// servers); a refresh token dies as soon as it is used (rotation, contract §8.2).
pub(crate) struct TokenStore {
    /// Access token -> expiry (`None` = never; used when no OAuth app is configured).
    access: HashMap<String, Option<Instant>>,
    current_access: Option<String>,
    refresh: Option<String>,
    ttl: Option<Duration>,
    refresh_count: u32,
}

/// Outcome of checking the `auth` value of a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid,
    Expired,
    Unknown,
}

impl TokenStore {
    pub(crate) fn new(
        access: Option<String>,
        oauth: Option<(String, Duration)>,
        now: Instant,
    ) -> TokenStore {
        let ttl = oauth.as_ref().map(|(_, ttl)| *ttl);
        let mut tokens = HashMap::new();
        if let Some(token) = &access {
            tokens.insert(token.clone(), ttl.map(|t| now + t));
        }
        TokenStore {
            access: tokens,
            current_access: access,
            refresh: oauth.map(|(refresh, _)| refresh),
            ttl,
            refresh_count: 0,
        }
    }

    pub(crate) fn check(&self, token: &str, now: Instant) -> TokenCheck {
        match self.access.get(token) {
            None => TokenCheck::Unknown,
            Some(Some(expiry)) if now >= *expiry => TokenCheck::Expired,
            Some(_) => TokenCheck::Valid,
        }
    }

    pub(crate) fn current_access(&self) -> Option<String> {
        self.current_access.clone()
    }

    pub(crate) fn current_refresh(&self) -> Option<String> {
        self.refresh.clone()
    }

    pub(crate) fn refresh_count(&self) -> u32 {
        self.refresh_count
    }

    /// Makes every access token issued so far expire now.
    pub(crate) fn expire_all(&mut self, now: Instant) {
        for expiry in self.access.values_mut() {
            *expiry = Some(now);
        }
    }

    /// Issues a new pair and invalidates the used refresh token.
    fn rotate(&mut self, now: Instant) -> (String, String, Duration) {
        let ttl = self.ttl.unwrap_or(Duration::from_secs(3600));
        let access = super::random_token(32);
        let refresh = super::random_token(32);
        self.access.insert(access.clone(), Some(now + ttl));
        self.current_access = Some(access.clone());
        self.refresh = Some(refresh.clone());
        self.refresh_count += 1;
        (access, refresh, ttl)
    }
}

/// `grant_type=refresh_token` exchange. Errors use the OAuth-server shape
/// `{"error","error_description"}`: unsupported grant type => 400 `invalid_request`,
/// bad client id/secret => 401 `invalid_client` (status [INFERRED] in the contract),
/// unknown or already rotated refresh token => 400 `invalid_grant`.
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
    if get("grant_type") != "refresh_token" {
        return Reply::v1_error(
            400,
            "invalid_request",
            "Only grant_type=refresh_token is supported by the sandbox",
        );
    }
    if get("client_id") != app.client_id || get("client_secret") != app.client_secret {
        return Reply::v1_error(401, "invalid_client", "Invalid client credentials");
    }
    let presented = get("refresh_token");
    if presented.is_empty() || tokens.refresh.as_deref() != Some(presented) {
        return Reply::v1_error(400, "invalid_grant", "Invalid grant");
    }
    let (access, refresh, ttl) = tokens.rotate(now);
    let base = settings.base_url();
    Reply::json(
        200,
        &json!({
            "access_token": access,
            "client_endpoint": format!("{base}/rest/"),
            "domain": settings.addr.to_string(),
            "expires": time::now_secs() + i64::try_from(ttl.as_secs()).unwrap_or(0),
            "expires_in": ttl.as_secs(),
            "member_id": "sandbox0000000000000000000000000",
            "refresh_token": refresh,
            "scope": settings.scopes.join(","),
            "server_endpoint": format!("{base}/rest/"),
            "status": "F",
            "user_id": settings.user_id,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_unknown_tokens() {
        let t0 = Instant::now();
        let store = TokenStore::new(
            Some("tok".into()),
            Some(("ref".into(), Duration::from_secs(10))),
            t0,
        );
        assert_eq!(store.check("tok", t0), TokenCheck::Valid);
        assert_eq!(
            store.check("tok", t0 + Duration::from_secs(10)),
            TokenCheck::Expired
        );
        assert_eq!(store.check("other", t0), TokenCheck::Unknown);
        let forever = TokenStore::new(Some("tok".into()), None, t0);
        assert_eq!(
            forever.check("tok", t0 + Duration::from_secs(1_000_000)),
            TokenCheck::Valid
        );
    }

    #[test]
    fn expire_all_expires_issued_tokens_only() {
        let t0 = Instant::now();
        let mut store = TokenStore::new(
            Some("tok".into()),
            Some(("ref".into(), Duration::from_secs(3600))),
            t0,
        );
        store.expire_all(t0);
        assert_eq!(store.check("tok", t0), TokenCheck::Expired);
        let (fresh, _, _) = store.rotate(t0);
        assert_eq!(store.check(&fresh, t0), TokenCheck::Valid);
    }
}
