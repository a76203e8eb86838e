//! `/oauth/authorize/`: the portal's sign-in (docs/bitrix24-api.md#sign-in). A real portal shows its
//! login form; the sandbox lists its users instead, each a link that signs in as them, and
//! then redirects like a portal: `code`, `state`, `domain`, `member_id`, `scope`,
//! `server_domain`.
//!
//! Pages are self-contained HTML (no scripts, images or external styles) and say plainly
//! that this is the sandbox.

use std::time::Instant;

use url::Url;

use super::Shared;
use super::oauth::MEMBER_ID;
use super::params::parse_urlencoded;
use super::reply::Reply;
use crate::html::escape;

const HTML: &str = "text/html; charset=utf-8";

/// `GET /oauth/authorize/?client_id=…&state=…[&redirect_uri=…][&user_id=N]`.
///
/// Sandbox choices: the client and redirect address are checked before anything else (a
/// wrong one never shows the user list); a `redirect_uri` when the app has no registered
/// address is refused, as there is no domain to match; an unknown `user_id` is a 400 page.
pub(crate) fn authorize(shared: &Shared, path: &str, query: Option<&str>, now: Instant) -> Reply {
    let query = query.unwrap_or("");
    let params = parse_urlencoded(query);
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let settings = &shared.settings;
    let Some(app) = settings
        .oauth
        .as_ref()
        .filter(|a| !get("client_id").is_empty() && a.client_id == get("client_id"))
    else {
        return error_page(
            "Unknown application",
            "The client_id does not name an application installed on this portal.",
        );
    };
    let given = Some(get("redirect_uri")).filter(|s| !s.is_empty());
    let registered = shared.lock().redirect_uri.clone();
    let Ok(target) = redirect_target(registered.as_deref(), given) else {
        return error_page(
            "Wrong redirect address",
            "The redirect_uri must be on the application's registered domain \
             (same scheme, host and port).",
        );
    };
    let Some(raw_user) = params.get("user_id") else {
        let users: Vec<(i64, String)> = shared
            .lock()
            .world
            .users
            .iter()
            .map(|u| (u.id, u.name()))
            .collect();
        return user_list(path, query, &users);
    };
    let mut state = shared.lock();
    let user = raw_user
        .parse::<i64>()
        .ok()
        .filter(|id| state.world.users.iter().any(|u| u.id == *id))
        .and_then(|id| u64::try_from(id).ok());
    let Some(user) = user else {
        return error_page("Unknown user", "There is no such user on this portal.");
    };
    let code = state.tokens.issue_code(user, app.code_ttl, now);
    drop(state);
    let domain = settings.addr.to_string();
    let scope = settings.scopes.join(",");
    let fields = [
        ("code", code.as_str()),
        ("state", get("state")),
        ("domain", domain.as_str()),
        ("member_id", MEMBER_ID),
        ("scope", scope.as_str()),
        // The sandbox is its own OAuth server.
        ("server_domain", domain.as_str()),
    ];
    match target {
        Some(mut url) => {
            url.query_pairs_mut().extend_pairs(fields);
            page(
                302,
                "Redirecting",
                "<p>Signed in; returning to the application.</p>",
            )
            .with_header("Location", url.as_str())
        }
        None => code_page(&fields),
    }
}

/// Where the browser goes back to: `Ok(None)` shows the code on a page instead.
fn redirect_target(registered: Option<&str>, given: Option<&str>) -> Result<Option<Url>, ()> {
    let registered = match registered {
        Some(r) => Some(Url::parse(r).map_err(|_| ())?),
        None => None,
    };
    match (registered, given) {
        (None, None) => Ok(None),
        (Some(r), None) => Ok(Some(r)),
        (None, Some(_)) => Err(()),
        (Some(r), Some(g)) => {
            let g = Url::parse(g).map_err(|_| ())?;
            let same = g.scheme() == r.scheme()
                && g.host_str().is_some()
                && g.host_str() == r.host_str()
                && g.port_or_known_default() == r.port_or_known_default();
            if same { Ok(Some(g)) } else { Err(()) }
        }
    }
}

fn user_list(path: &str, query: &str, users: &[(i64, String)]) -> Reply {
    let mut items = String::new();
    for (id, name) in users {
        let href = format!("{path}?{query}&user_id={id}");
        items.push_str(&format!(
            "<li><a href=\"{}\">{}</a> <small>(user {id})</small></li>\n",
            escape(&href),
            escape(name)
        ));
    }
    page(
        200,
        "Sign in",
        &format!(
            "<p>Choose who signs in. (A real portal asks for a login and password.)</p>\n\
             <ul>\n{items}</ul>"
        ),
    )
}

/// Bitrix24's answer for an app without a redirect address: the code, for copying.
fn code_page(fields: &[(&str, &str)]) -> Reply {
    let mut rows = String::new();
    for (name, value) in fields {
        rows.push_str(&format!(
            "<dt>{}</dt><dd><code>{}</code></dd>\n",
            escape(name),
            escape(value)
        ));
    }
    page(
        200,
        "Authorization code",
        &format!(
            "<p>The application has no redirect address. Copy the code; it works once, \
             briefly.</p>\n<dl>\n{rows}</dl>"
        ),
    )
}

fn error_page(title: &str, text: &str) -> Reply {
    page(400, title, &format!("<p>{}</p>", escape(text)))
}

/// A whole page: `body` is trusted HTML, `title` is escaped.
fn page(status: u16, title: &str, body: &str) -> Reply {
    let title = escape(title);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} - Bitrix24 sandbox</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}\
         .banner{{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em}}</style>\
         </head>\n<body>\n<p class=\"banner\"><strong>Bitrix24 sandbox</strong>: a local \
         emulator of a portal, not a real Bitrix24 account.</p>\n<h1>{title}</h1>\n{body}\n\
         </body></html>\n"
    );
    Reply::raw(status, HTML, html.into_bytes())
        .with_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        )
        .with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_must_stay_on_the_registered_origin() {
        let reg = Some("https://app.example.com/cb");
        let ok = |g| redirect_target(reg, Some(g)).map(|u| u.map(String::from));
        assert_eq!(
            ok("https://APP.example.com:443/other?x=1"),
            Ok(Some("https://app.example.com/other?x=1".into()))
        );
        for bad in [
            "http://app.example.com/cb",
            "https://app.example.com:8443/cb",
            "https://evil.example.com/cb",
            "https://app.example.com@evil.example.com/cb",
            "/relative",
            "javascript:alert(1)",
        ] {
            assert_eq!(ok(bad), Err(()), "{bad}");
        }
        assert_eq!(
            redirect_target(reg, None).map(|u| u.map(String::from)),
            Ok(Some("https://app.example.com/cb".into()))
        );
        assert_eq!(redirect_target(None, None), Ok(None));
        assert_eq!(redirect_target(None, Some("https://x/")), Err(()));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
