//! Where REST 3.0 calls go and how they authenticate.
//!
//! A webhook URL carries its secret in the path (`/rest/api/{user}/{secret}/{method}`);
//! OAuth puts the access token in the JSON body's `auth` field. Either way the secret is
//! registered with [`crate::redact`] as soon as it is parsed.

use reqwest::Url;

use crate::redact;

/// How calls are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// The secret is part of the URL path.
    Webhook { user_id: u64 },
    /// The access token goes into the JSON body as `auth`.
    OAuth { access_token: String },
}

/// The REST 3.0 base URL of a portal plus its credentials.
#[derive(Clone)]
pub struct Endpoint {
    /// Ends with `/`; a method name is appended to it.
    base: Url,
    auth: Auth,
}

/// A configuration value that cannot be used; the message never contains the secret.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct EndpointError(pub String);

impl Endpoint {
    /// Parses an inbound webhook URL: `https://PORTAL/rest/USER/SECRET/` or
    /// `https://PORTAL/rest/api/USER/SECRET/` (trailing slash optional), and normalises
    /// it to the REST 3.0 form.
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
        let mut base = parsed.clone();
        base.set_path(&format!("/rest/api/{user_id}/{secret}/"));
        base.set_query(None);
        base.set_fragment(None);
        Ok(Self {
            base,
            auth: Auth::Webhook { user_id },
        })
    }

    /// An OAuth endpoint: the portal's address plus an access token.
    pub fn oauth(portal_url: &str, access_token: &str) -> Result<Self, EndpointError> {
        let access_token = access_token.trim();
        if access_token.is_empty() {
            return Err(EndpointError("BITRIX24_ACCESS_TOKEN is empty".into()));
        }
        redact::register(access_token);
        Self::oauth_with(portal_url, access_token.to_string())
    }

    /// An OAuth endpoint without a token of its own: the client's
    /// [`super::oauth::Refresher`] supplies (and renews) it.
    pub fn oauth_refreshable(portal_url: &str) -> Result<Self, EndpointError> {
        Self::oauth_with(portal_url, String::new())
    }

    fn oauth_with(portal_url: &str, access_token: String) -> Result<Self, EndpointError> {
        const SHAPE: &str = "expected the portal address, e.g. https://example.bitrix24.com";
        let mut base = parse_http_url(portal_url.trim(), "BITRIX24_PORTAL_URL", SHAPE)?;
        base.set_path("/rest/api/");
        base.set_query(None);
        base.set_fragment(None);
        Ok(Self {
            base,
            auth: Auth::OAuth { access_token },
        })
    }

    /// The URL of one REST 3.0 method.
    pub fn method_url(&self, method: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{method}", self.base.path()));
        url
    }

    /// The URL of a method of the older REST generation (`/rest/` without `/api/`),
    /// for the few methods REST 3.0 does not have yet (`im.*`).
    pub fn v1_method_url(&self, method: &str) -> Url {
        let mut url = self.base.clone();
        let path = self.base.path().replacen("/rest/api/", "/rest/", 1);
        url.set_path(&format!("{path}{method}"));
        url
    }

    /// Credentials as configured.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The portal origin (`https://host[:port]`), safe to print.
    pub fn portal(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// A description safe to print: origin, mode and, for webhooks, the user id.
    pub fn describe(&self) -> String {
        match &self.auth {
            Auth::Webhook { user_id } => {
                format!("{} (inbound webhook of user {user_id})", self.portal())
            }
            Auth::OAuth { .. } => format!("{} (OAuth access token)", self.portal()),
        }
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
        e.method_url(m).to_string()
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
            assert!(matches!(e.auth(), Auth::Webhook { user_id: 7 }));
        }
    }

    #[test]
    fn v1_url_for_im_methods() {
        let e = Endpoint::webhook("https://p.example/rest/api/7/abcdef123456/").unwrap();
        assert_eq!(
            e.v1_method_url("im.dialog.messages.get").to_string(),
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
