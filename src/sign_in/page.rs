//! The pages a person's browser sees during sign-in: plain HTML, no scripts, no external
//! resources, every value escaped, and the same protective headers on each (no sniffing,
//! no referrer, no framing, no caching, a strict content policy).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The content policy of a page without a form: nothing loads, nothing submits, nothing
/// frames it; only its own inline style applies.
const CSP_NO_FORM: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The content policy of the consent page. No `form-action`: its form posts to this
/// server, which answers with a redirect to the portal (allow) or to the client's
/// redirect URI (deny), and Chromium applies `form-action` to every redirect of the
/// navigation a form starts (Firefox and Safari do not), so `form-action 'self'` would
/// block both answers in Chrome; listing their targets would not do either, because with
/// a remembered portal session the chain goes on through the portal to our callback and
/// the client's redirect URI (any scheme). The page holds no script and every value in
/// it is escaped, so there is no injected form for `form-action` to stop.
const CSP_FORM: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

/// Which content policy a page needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only text and links: forms are refused too.
    Plain,
    /// Holds a form posting to this server.
    Form,
}

/// An error page with `status`, a title and what to do next.
pub fn error(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<h1>{t}</h1><p>{d}</p><p class=\"small\">Bitrix24 task results MCP server</p>",
        t = escape(title),
        d = escape(detail)
    );
    html(status, Kind::Plain, title, &body)
}

/// A whole page: `body` (already escaped HTML) under an escaped `title`, with the
/// protective headers.
pub fn html(status: StatusCode, kind: Kind, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        t = escape(title),
    );
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    let csp = match kind {
        Kind::Plain => CSP_NO_FORM,
        Kind::Form => CSP_FORM,
    };
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, csp),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;\
     padding:0 1em;line-height:1.5}code{background:#f3f3f3;padding:0 .2em;word-break:break-all}\
     .small{color:#666;font-size:.9em}.buttons{margin-top:2em}\
     button{font-size:1em;padding:.5em 1.5em;margin-right:1em;cursor:pointer}\
     dt{font-weight:bold}dd{margin:0 0 .5em 1em}";

/// `s` safe inside HTML text and attribute values ([`crate::html::escape`]), with control
/// characters (a newline in a name, ESC), which have no business on a page, replaced by
/// U+FFFD first.
pub fn escape(s: &str) -> String {
    if s.chars().any(char::is_control) {
        let cleaned: String = s
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        crate::html::escape(&cleaned)
    } else {
        crate::html::escape(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        assert_eq!(escape("a\nb\u{1b}[2J"), "a\u{fffd}b\u{fffd}[2J");
    }

    #[test]
    fn every_page_carries_the_protective_headers() {
        for r in [
            error(StatusCode::BAD_REQUEST, "t", "d"),
            html(StatusCode::OK, Kind::Form, "t", "<p>x</p>"),
        ] {
            let h = r.headers();
            assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
            assert_eq!(h[header::CACHE_CONTROL], "no-store");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
        }
    }
}
