//! Where REST 3.0 calls go and how they authenticate.
//!
//! A webhook URL carries its secret in the path (`/rest/api/{user}/{secret}/{method}`);
//! OAuth puts the access token in the JSON body's `auth` field. Either way the secret is
//! registered with [`crate::redact`] as soon as it is parsed.

use std::sync::Arc;

use reqwest::Url;
use secrecy::ExposeSecret;

use super::caller::{Caller, StaticToken, TokenSource, WebhookCredentials};
use crate::redact;

/// A portal's REST address, without credentials: shared by every caller of the portal.
#[derive(Clone, Debug)]
pub struct Portal {
    /// The portal origin with path `/rest/`.
    base: Url,
}

/// A configured portal plus the identity its calls run as when a request brings none.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Where calls go.
    pub portal: Portal,
    /// Who calls by default.
    pub caller: Caller,
}

/// A configuration value that cannot be used; the message never contains the secret.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct EndpointError(pub String);

impl Portal {
    /// The portal at `portal_url` (any path is dropped), e.g. `https://example.bitrix24.com`.
    pub fn parse(portal_url: &str) -> Result<Self, EndpointError> {
        const SHAPE: &str = "expected the portal address, e.g. https://example.bitrix24.com";
        let base = parse_http_url(portal_url.trim(), "BITRIX24_PORTAL_URL", SHAPE)?;
        Ok(Self::at(base))
    }

    fn at(mut base: Url) -> Self {
        base.set_path("/rest/");
        base.set_query(None);
        base.set_fragment(None);
        Self { base }
    }

    /// The URL of one REST 3.0 method for `caller`: a webhook's user and secret are path
    /// segments, an OAuth token travels in the body instead.
    pub fn method_url(&self, caller: &Caller, method: &str) -> Url {
        self.url(caller, "api/", method)
    }

    /// The URL of a method of the older REST generation (`/rest/` without `/api/`),
    /// for the few methods REST 3.0 does not have yet (`im.*`).
    pub fn v1_method_url(&self, caller: &Caller, method: &str) -> Url {
        self.url(caller, "", method)
    }

    fn url(&self, caller: &Caller, generation: &str, method: &str) -> Url {
        let mut url = self.base.clone();
        let path = match caller {
            // The one place a webhook secret leaves its wrapper: Bitrix24 reads it from the path.
            Caller::Webhook(w) => format!(
                "/rest/{generation}{}/{}/{method}",
                w.user_id,
                w.secret.expose_secret()
            ),
            Caller::OAuth(_) => format!("/rest/{generation}{method}"),
        };
        url.set_path(&path);
        url
    }

    /// The portal's sign-in page for the application `client_id` (docs/bitrix24-api.md#sign-in): the
    /// person's browser goes there and comes back to `redirect_uri` with a code.
    pub fn authorize_url(&self, client_id: &str, state: &str, redirect_uri: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path("/oauth/authorize/");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("state", state)
            .append_pair("redirect_uri", redirect_uri);
        url
    }

    /// The host (and port) of the portal, as its token answers name it in `client_endpoint`.
    pub fn host(&self) -> String {
        let host = self.base.host_str().unwrap_or_default();
        match self.base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// The portal origin (`https://host[:port]`), safe to print.
    pub fn origin(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// Whether the portal is on this machine (plain HTTP is only expected there).
    pub fn is_loopback(&self) -> bool {
        match self.base.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        }
    }

    /// Whether calls travel over TLS.
    pub fn is_https(&self) -> bool {
        self.base.scheme() == "https"
    }
}

impl Endpoint {
    /// Parses an inbound webhook URL: `https://PORTAL/rest/USER/SECRET/` or
    /// `https://PORTAL/rest/api/USER/SECRET/` (trailing slash optional).
    pub fn webhook(url: &str) -> Result<Self, EndpointError> {
        const SHAPE: &str = "expected https://PORTAL/rest/USER_ID/SECRET/ (as Bitrix24 shows it under Developer resources > Inbound webhook)";
        let url = url.trim();
        let parsed = parse_http_url(url, "BITRIX24_WEBHOOK_URL", SHAPE)?;
        let segments: Vec<&str> = parsed
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let rest = match segments.as_slice() {
            ["rest", "api", rest @ ..] | ["rest", rest @ ..] => rest,
            _ => {
                return Err(EndpointError(format!(
                    "BITRIX24_WEBHOOK_URL has an unexpected path: {SHAPE}"
                )));
            }
        };
        let [user, secret] = rest else {
            return Err(EndpointError(format!(
                "BITRIX24_WEBHOOK_URL has an unexpected path: {SHAPE}"
            )));
        };
        redact::register(secret);
        let user_id: u64 = user.parse().ok().filter(|u| *u > 0).ok_or_else(|| {
            EndpointError(format!(
                "BITRIX24_WEBHOOK_URL: the user id segment must be a positive number; {SHAPE}"
            ))
        })?;
        Ok(Self {
            portal: Portal::at(parsed.clone()),
            caller: Caller::Webhook(Arc::new(WebhookCredentials {
                user_id,
                secret: (*secret).into(),
            })),
        })
    }

    /// An OAuth endpoint: the portal's address plus an access token that cannot be renewed.
    pub fn oauth(portal_url: &str, access_token: &str) -> Result<Self, EndpointError> {
        let access_token = access_token.trim();
        if access_token.is_empty() {
            return Err(EndpointError("BITRIX24_ACCESS_TOKEN is empty".into()));
        }
        redact::register(access_token);
        Self::oauth_with(portal_url, Arc::new(StaticToken::new(access_token)))
    }

    /// An OAuth endpoint whose token `source` supplies and renews.
    pub fn oauth_with(
        portal_url: &str,
        source: Arc<dyn TokenSource>,
    ) -> Result<Self, EndpointError> {
        Ok(Self {
            portal: Portal::parse(portal_url)?,
            caller: Caller::OAuth(source),
        })
    }

    /// The portal origin, safe to print.
    pub fn portal(&self) -> String {
        self.portal.origin()
    }

    /// A description safe to print: origin, mode and, for webhooks, the user id.
    pub fn describe(&self) -> String {
        match &self.caller {
            Caller::Webhook(w) => {
                format!("{} (inbound webhook of user {})", self.portal(), w.user_id)
            }
            Caller::OAuth(_) => format!("{} (OAuth access token)", self.portal()),
        }
    }

    /// Whether the portal is on this machine.
    pub fn is_loopback(&self) -> bool {
        self.portal.is_loopback()
    }

    /// Whether calls travel over TLS.
    pub fn is_https(&self) -> bool {
        self.portal.is_https()
    }
}

fn parse_http_url(url: &str, var: &str, shape: &str) -> Result<Url, EndpointError> {
    let parsed = Url::parse(url)
        .map_err(|e| EndpointError(format!("{var} is not a valid URL ({e}); {shape}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(EndpointError(format!(
            "{var} must start with https://; {shape}"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError(format!("{var} has no host; {shape}")));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(e: &Endpoint, m: &str) -> String {
        e.portal.method_url(&e.caller, m).to_string()
    }

    #[test]
    fn v1_webhook_url_is_normalised_to_rest_api() {
        let e = Endpoint::webhook("https://b24-x.bitrix24.com/rest/1/abcdef123456/").unwrap();
        assert_eq!(
            url(&e, "tasks.task.result.add"),
            "https://b24-x.bitrix24.com/rest/api/1/abcdef123456/tasks.task.result.add"
        );
    }

    #[test]
    fn api_webhook_url_and_missing_trailing_slash_are_accepted() {
        for input in [
            "https://p.example/rest/api/7/abcdef123456/",
            "https://p.example/rest/api/7/abcdef123456",
            "https://p.example/rest/7/abcdef123456",
            "  https://p.example/rest/7/abcdef123456/?x=1  ",
        ] {
            let e = Endpoint::webhook(input).unwrap();
            assert_eq!(
                url(&e, "tasks.task.result.list"),
                "https://p.example/rest/api/7/abcdef123456/tasks.task.result.list",
                "{input}"
            );
            assert!(matches!(&e.caller, Caller::Webhook(w) if w.user_id == 7));
        }
    }

    #[test]
    fn v1_url_for_im_methods() {
        let e = Endpoint::webhook("https://p.example/rest/api/7/abcdef123456/").unwrap();
        assert_eq!(
            e.portal
                .v1_method_url(&e.caller, "im.dialog.messages.get")
                .to_string(),
            "https://p.example/rest/7/abcdef123456/im.dialog.messages.get"
        );
    }

    #[test]
    fn port_and_on_premise_host_are_kept() {
        let e = Endpoint::webhook("http://127.0.0.1:8080/rest/1/abcdef123456/").unwrap();
        assert_eq!(
            url(&e, "m"),
            "http://127.0.0.1:8080/rest/api/1/abcdef123456/m"
        );
        assert!(e.is_loopback());
        assert!(!e.is_https());
    }

    #[test]
    fn bad_webhook_urls_are_rejected_without_echoing_the_secret() {
        for input in [
            "not a url",
            "ftp://p.example/rest/1/zzsecretzz/",
            "https://p.example/api/1/zzsecretzz/",
            "https://p.example/rest/x/zzsecretzz/",
            "https://p.example/rest/0/zzsecretzz/",
            "https://p.example/rest/1/zzsecretzz/extra/",
            "https://p.example/rest/1/",
        ] {
            let err = Endpoint::webhook(input)
                .err()
                .unwrap_or_else(|| panic!("{input}"));
            assert!(!err.0.contains("zzsecretzz"), "{input}: {err}");
            assert!(err.0.contains("BITRIX24_WEBHOOK_URL"), "{err}");
        }
    }

    #[test]
    fn oauth_endpoint_uses_rest_api_without_secret_in_url() {
        let e = Endpoint::oauth("https://p.example/some/path", "tok-123456").unwrap();
        assert_eq!(
            url(&e, "tasks.task.result.delete"),
            "https://p.example/rest/api/tasks.task.result.delete"
        );
        assert!(!e.describe().contains("tok-123456"));
        assert!(Endpoint::oauth("https://p.example", " ").is_err());
    }
}
