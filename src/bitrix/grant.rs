//! The OAuth server's token endpoint (docs/bitrix24-api.md#sign-in, #token-refresh): a sign-in code or a refresh
//! token goes in, a new token pair and the person it belongs to come out.
//!
//! The one implementation of it: the people who sign in to the HTTP server, and the
//! token engine that refreshes every held pair (`crate::identity`), call it. Every
//! exchange is a POST with a form body, so the client secret never appears in a URL; a
//! `server_endpoint` learnt from an answer is used only over `https` (or on a loopback
//! host, for the sandbox and tests).

use std::time::Duration;

use reqwest::{Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::error::CallError;
use crate::redact;

/// Where exchanges go when neither an override nor a `server_endpoint` says otherwise.
pub const DEFAULT_OAUTH_SERVER: &str = "https://oauth.bitrix.info";

/// Whether `url` may receive the client secret: `https`, or `http` to a loopback host
/// (the sandbox and tests).
pub(crate) fn is_safe_oauth_server(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Answers larger than this are not token answers.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// One exchange never waits longer than this.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The Bitrix24 application people sign in through.
#[derive(Debug, Clone)]
pub struct App {
    /// The application's `client_id`.
    pub client_id: String,
    /// The application's `client_secret`; sent only to the OAuth server.
    pub client_secret: SecretString,
}

/// What is exchanged.
#[derive(Debug, Clone, Copy)]
pub enum GrantRequest<'a> {
    /// A sign-in `code` from the portal's redirect (lives 30 s, single use).
    Code(&'a str),
    /// A refresh token (single use: the answer carries its successor).
    Refresh(&'a str),
}

/// A successful answer: the pair, and whose it is.
#[derive(Debug)]
pub struct Issued {
    /// The new access token.
    pub access_token: SecretString,
    /// The new refresh token (the old one is dead now).
    pub refresh_token: SecretString,
    /// When the access token expires (unix seconds), from `expires` or `expires_in`.
    pub expires_at: Option<i64>,
    /// The Bitrix24 user the pair acts as.
    pub user_id: Option<i64>,
    /// The portal's `member_id`.
    pub member_id: Option<String>,
    /// The portal's REST address, e.g. `https://example.bitrix24.com/rest/`.
    pub client_endpoint: Option<String>,
    /// The OAuth server's REST address; its host takes the next refresh.
    pub server_endpoint: Option<String>,
    /// The scopes granted, comma-separated as Bitrix24 sends them.
    pub scope: Option<String>,
}

/// Where the token endpoint is: the override (`--oauth-url`), else the host of a
/// previous answer's `server_endpoint` when it is safe for the secret, else
/// `https://oauth.bitrix.info`.
pub fn token_url(override_url: Option<&Url>, server_endpoint: Option<&str>) -> Url {
    let base = override_url.cloned().or_else(|| {
        server_endpoint.and_then(|s| Url::parse(s).ok()).filter(|u| {
            // The client secret travels in the body: never in clear to a remote host.
            let safe = is_safe_oauth_server(u);
            if !safe {
                tracing::warn!(
                    server = %u.origin().ascii_serialization(),
                    "ignoring the token answer's server_endpoint: not https; using {DEFAULT_OAUTH_SERVER}"
                );
            }
            safe
        })
    });
    let base = base.unwrap_or_else(|| Url::parse(DEFAULT_OAUTH_SERVER).expect("a valid constant"));
    base.join("/oauth/token/")
        .unwrap_or_else(|_| Url::parse(DEFAULT_OAUTH_SERVER).expect("a valid constant"))
}

/// Exchanges `grant` at `url` for a new pair.
pub async fn exchange(
    http: &reqwest::Client,
    url: Url,
    app: &App,
    grant: GrantRequest<'_>,
) -> Result<Issued, CallError> {
    let origin = url.origin().ascii_serialization();
    // Built in a block: the serializer is not `Send` and must not live across an await.
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        match grant {
            GrantRequest::Code(code) => form
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", code),
            GrantRequest::Refresh(token) => form
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", token),
        };
        form.append_pair("client_id", &app.client_id)
            .append_pair("client_secret", app.client_secret.expose_secret())
            .finish()
    };
    let unreachable = |e: reqwest::Error| CallError::OAuth {
        code: "unreachable".into(),
        detail: redact::redact(&format!(
            "could not reach the OAuth server {origin}: {}",
            e.without_url()
        ))
        .into_owned(),
    };
    let mut response = http
        .post(url)
        .timeout(EXCHANGE_TIMEOUT)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(form)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    parse(status, &body, &origin)
}

pub(crate) fn parse(status: u16, body: &[u8], origin: &str) -> Result<Issued, CallError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| CallError::OAuth {
        code: format!("HTTP_{status}"),
        detail: format!("the OAuth server {origin} answered HTTP {status} without a JSON body"),
    })?;
    let text = |k: &str| {
        value
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let Some(code) = text("error") {
        let detail = text("error_description").unwrap_or_else(|| "no description".into());
        return Err(CallError::OAuth {
            code,
            detail: redact::redact(&detail).into_owned(),
        });
    }
    let (200..=299, Some(access), Some(refresh)) =
        (status, text("access_token"), text("refresh_token"))
    else {
        return Err(CallError::OAuth {
            code: format!("HTTP_{status}"),
            detail: format!(
                "the OAuth server {origin} answered HTTP {status} without a new token pair"
            ),
        });
    };
    // The caller masks the pair in its own `redact::Slot`, replaced at each refresh.
    // Bitrix24 sends numbers, but some proxies turn them into strings.
    let number = |k: &str| {
        value
            .get(k)
            .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()))
    };
    let expires_at =
        number("expires").or_else(|| crate::clock::now_s().checked_add(number("expires_in")?));
    Ok(Issued {
        access_token: SecretString::from(access),
        refresh_token: SecretString::from(refresh),
        expires_at,
        user_id: number("user_id"),
        member_id: text("member_id"),
        client_endpoint: text("client_endpoint"),
        server_endpoint: text("server_endpoint"),
        scope: text("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_answer_names_the_person() {
        let body = br#"{"access_token":"a1","refresh_token":"r1","expires_in":3600,"user_id":"7",
            "member_id":"m","client_endpoint":"https://p.example/rest/","server_endpoint":"https://oauth.bitrix.info/rest/","scope":"task,im"}"#;
        let issued = parse(200, body, "o").unwrap();
        assert_eq!(issued.user_id, Some(7));
        assert_eq!(issued.member_id.as_deref(), Some("m"));
        assert_eq!(issued.access_token.expose_secret(), "a1");
        assert!(issued.expires_at.unwrap() > 1_700_000_000);
        assert!(!format!("{issued:?}").contains("a1"));
        assert!(!format!("{issued:?}").contains("r1"));
    }

    #[test]
    fn errors_keep_the_code_whatever_the_language() {
        let body = r#"{"error":"invalid_grant","error_description":"Неверный код"}"#;
        match parse(400, body.as_bytes(), "o") {
            Err(CallError::OAuth { code, .. }) => assert_eq!(code, "invalid_grant"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse(502, b"<html>", "o"), Err(CallError::OAuth { code, .. }) if code == "HTTP_502")
        );
    }

    #[test]
    fn server_endpoint_is_used_only_over_https_or_loopback() {
        for (endpoint, expected) in [
            (
                "https://oauth.bitrix24.tech/rest/",
                "https://oauth.bitrix24.tech/oauth/token/",
            ),
            (
                "http://127.0.0.1:9/rest/",
                "http://127.0.0.1:9/oauth/token/",
            ),
            ("http://[::1]:9/rest/", "http://[::1]:9/oauth/token/"),
            (
                "http://localhost:9/rest/",
                "http://localhost:9/oauth/token/",
            ),
            (
                "http://oauth.evil.example/rest/",
                "https://oauth.bitrix.info/oauth/token/",
            ),
            (
                "http://10.0.0.1/rest/",
                "https://oauth.bitrix.info/oauth/token/",
            ),
            (
                "ftp://127.0.0.1/rest/",
                "https://oauth.bitrix.info/oauth/token/",
            ),
        ] {
            assert_eq!(
                token_url(None, Some(endpoint)).as_str(),
                expected,
                "{endpoint}"
            );
        }
    }

    #[test]
    fn answers_are_parsed() {
        let ok = parse(
            200,
            br#"{"access_token":"a1","refresh_token":"r1","expires":1780319382,"server_endpoint":"https://oauth.bitrix.info/rest/"}"#,
            "o",
        )
        .unwrap();
        assert_eq!(ok.access_token.expose_secret(), "a1");
        assert_eq!(ok.expires_at, Some(1780319382));
        let grant = parse(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid grant"}"#,
            "o",
        )
        .unwrap_err();
        assert!(matches!(&grant, CallError::OAuth { code, .. } if code == "invalid_grant"));
        let html = parse(502, b"<html>", "o").unwrap_err();
        assert!(matches!(&html, CallError::OAuth { code, .. } if code == "HTTP_502"));
        let partial = parse(200, br#"{"access_token":"a"}"#, "o").unwrap_err();
        assert!(matches!(&partial, CallError::OAuth { code, .. } if code == "HTTP_200"));
    }

    #[test]
    fn the_token_url_never_sends_the_secret_in_clear() {
        assert_eq!(
            token_url(None, Some("http://evil.example/rest/")).as_str(),
            "https://oauth.bitrix.info/oauth/token/"
        );
        assert_eq!(
            token_url(None, Some("https://oauth.bitrix24.tech/rest/")).as_str(),
            "https://oauth.bitrix24.tech/oauth/token/"
        );
        let local = Url::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            token_url(Some(&local), None).as_str(),
            "http://127.0.0.1:5000/oauth/token/"
        );
    }
}
