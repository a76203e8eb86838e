//! Redirects from the portal. Bitrix24 answers a renamed portal's old address with a
//! redirect, so one is followed (re-POSTed, never turned into GET), but never from
//! `https` to `http` (the body carries the OAuth token, the path the webhook secret),
//! and the user is told once per process to update the configured address.

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::Url;

/// Whether `status` is a redirect this client follows.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Where to re-POST after a redirect from `from` to `location`, or why not.
pub fn target(from: &Url, location: Option<&str>) -> Result<Url, String> {
    let to = location
        .and_then(|l| from.join(l).ok())
        .ok_or_else(|| "the portal redirected without a usable Location header".to_string())?;
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(format!(
            "the portal redirected from https to {} ({}); refusing to send credentials \
             unencrypted: check the portal address in your configuration",
            to.scheme(),
            to.origin().ascii_serialization()
        ));
    }
    Ok(to)
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Logs, once per process, that the portal moved; only origins, never paths (which hold
/// the webhook secret).
pub fn warn_moved(from: &Url, to: &Url) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            from = %from.origin().ascii_serialization(),
            to = %to.origin().ascii_serialization(),
            "the portal redirected to another address (renamed portal?); update the portal address \
             in your configuration (BITRIX24_PORTAL_URL or the webhook URL) to avoid the extra round trip"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn follows_relative_and_absolute_locations_over_https() {
        let from = url("https://old.bitrix24.ru/rest/1/secret/tasks.task.result.list");
        assert_eq!(
            target(&from, Some("https://new.bitrix24.ru/rest/1/secret/x")).unwrap(),
            url("https://new.bitrix24.ru/rest/1/secret/x")
        );
        assert_eq!(
            target(&from, Some("/rest/y")).unwrap(),
            url("https://old.bitrix24.ru/rest/y")
        );
        assert!(target(&from, None).is_err());
    }

    #[test]
    fn never_downgrades_https_to_http_and_names_no_secret() {
        let from = url("https://old.bitrix24.ru/rest/1/secret/tasks.task.result.list");
        let e = target(&from, Some("http://new.bitrix24.ru/rest/1/secret/x")).unwrap_err();
        assert!(e.contains("https") && !e.contains("secret"), "{e}");
        // Plain http portals (the sandbox) may still redirect among themselves.
        let plain = url("http://127.0.0.1:1/rest/x");
        assert!(target(&plain, Some("http://127.0.0.1:2/rest/x")).is_ok());
    }
}
