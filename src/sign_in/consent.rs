//! The consent page: before a browser goes to the portal for a client it has not yet
//! approved, this server asks the person, in its own page, whether that client may act
//! as them. Without it, anyone who registers a client could send a colleague a link and
//! get a code for them from a portal that signs its people in without a question (the
//! confused deputy of the MCP security best practices).
//!
//! The approval is bound to the browser shown the page: the pending sign-in is stored
//! under the hash of `consent_id.browser_nonce`, where the consent id travels in the form
//! and the nonce in an `HttpOnly`, `SameSite=Lax` cookie set with the page. The form's
//! POST takes that record once; posted twice, from another browser (no or another
//! cookie), from another site (a Lax cookie is not sent), or after the pending sign-in
//! expired, it finds nothing and gets a page that goes nowhere.
//!
//! An approval is remembered per browser and client (a signed cookie set when the
//! sign-in completes, see `approval.rs`) for `--consent-max-age`, as long as the person
//! stays signed in since: `users revoke` deletes the person, and the page shows again.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use reqwest::Url;

use super::approval::{Approval, approval_cookie, cookie, nonce_cookie, set_cookie};
use super::browser::{Back, Params, store_page, to_portal};
use super::secret::random_token;
use super::{PENDING_TTL, SignIn, page};
use crate::clock::now_s;
use crate::store::{ClientRecord, PendingAuth, StoreError, TokenHash};

/// Where the consent form posts.
pub const CONSENT_PATH: &str = "/authorize/consent";
/// Longest client name shown (a registered name is the client's own text).
const NAME_CHARS: usize = 80;

/// Whether this browser approved `client_id` before, and that approval still holds: its
/// signature checks for this client, it is younger than `--consent-max-age`, and the
/// person who gave it is still signed in since then.
pub(super) async fn remembered(sign_in: &SignIn, headers: &HeaderMap, client_id: &str) -> bool {
    let max_age = sign_in.inner.consent_max_age;
    if max_age <= 0 {
        return false;
    }
    let name = approval_cookie(client_id, secure(sign_in));
    let Some(value) = cookie(headers, &name) else {
        return false;
    };
    let Some(approval) = Approval::open(value, &sign_in.inner.consent_key, client_id) else {
        tracing::debug!(client = ?client_id, "a remembered approval did not verify; asking again");
        return false;
    };
    let age = now_s() - approval.issued_at;
    if !(-60..max_age).contains(&age) {
        return false;
    }
    match sign_in
        .store()
        .person(&approval.member_id, approval.user_id)
        .await
    {
        Ok(Some(person)) => person.created_at <= approval.issued_at,
        Ok(None) => false,
        Err(e) => {
            tracing::warn!("sign-in store error while reading a remembered approval: {e}");
            false
        }
    }
}

/// Shows the consent page for `pending` (a checked request of `client`), keeping the
/// request until the person answers.
pub(super) async fn ask(
    sign_in: &SignIn,
    headers: &HeaderMap,
    client: &ClientRecord,
    mut pending: PendingAuth,
) -> Response {
    let secure = secure(sign_in);
    let nonce_name = nonce_cookie(secure);
    // One nonce per browser: a second page open in another tab keeps the first valid.
    let nonce = cookie(headers, &nonce_name)
        .filter(|v| is_random_token(v))
        .map_or_else(random_token, str::to_string);
    let consent_id = random_token();
    pending.state = TokenHash::of(&format!("{consent_id}.{nonce}"));
    pending.expires_at = now_s() + PENDING_TTL;
    let body = render(sign_in, client, &pending.redirect_uri, &consent_id);
    let redirect = pending.redirect_uri.clone();
    match sign_in.store().put_pending(pending, now_s()).await {
        Ok(()) => {}
        Err(StoreError::Full) => {
            return page::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many sign-ins in progress",
                "This server has too many sign-ins waiting right now. Try again in a few minutes.",
            );
        }
        Err(e) => return store_page(&e),
    }
    sign_in.audit_shown(&client.client_id, &redirect).await;
    let mut answer = page::html(
        StatusCode::OK,
        page::Kind::Form,
        "Allow access to your task results?",
        &body,
    );
    let set = set_cookie(&nonce_name, &nonce, PENDING_TTL, secure);
    if let Ok(v) = HeaderValue::from_str(&set) {
        answer.headers_mut().append(header::SET_COOKIE, v);
    }
    answer
}

/// `POST /authorize/consent`: the person's answer.
pub async fn decide(State(sign_in): State<SignIn>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match Params::parse(&body) {
        Ok(f) => f,
        Err(repeated) => return repeated.page(),
    };
    let decision = form.get("decision");
    let (Some(consent_id), Some("allow" | "deny")) = (form.get("consent"), decision) else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "Answer not understood",
            "This answer to the consent page is incomplete. Start the sign-in again from your MCP client.",
        );
    };
    let pending = match cookie(&headers, &nonce_cookie(secure(&sign_in))) {
        None => None,
        Some(nonce) => {
            let key = TokenHash::of(&format!("{consent_id}.{nonce}"));
            match sign_in.store().take_pending(&key, now_s()).await {
                Ok(p) => p,
                Err(e) => return store_page(&e),
            }
        }
    };
    let Some(pending) = pending else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "This page is no longer valid",
            "This approval was already sent, has expired, or comes from another browser than the one \
             the page was shown in, so nothing happened. Start the sign-in again from your MCP client.",
        );
    };
    let allowed = decision == Some("allow");
    sign_in.audit_consent(&pending.client_id, allowed).await;
    if allowed {
        tracing::info!(client = ?pending.client_id, "a person allowed a client");
        return to_portal(&sign_in, pending, true).await;
    }
    tracing::info!(client = ?pending.client_id, "a person denied a client");
    crate::metrics::sign_in_denied();
    Back::to(&sign_in, &pending).error(
        "access_denied",
        "the person declined to let this client use their task results",
    )
}

/// Whether this server is reached over https (then its cookies are `__Host-`, `Secure`).
fn secure(sign_in: &SignIn) -> bool {
    sign_in.issuer().starts_with("https:")
}

/// Whether `v` has the shape of [`random_token`]'s values.
fn is_random_token(v: &str) -> bool {
    v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The page's body: who asks, what they may do, where the browser goes, two buttons.
fn render(sign_in: &SignIn, client: &ClientRecord, redirect_uri: &str, consent_id: &str) -> String {
    let e = page::escape;
    let (name, about) = client_name(client);
    let portal = sign_in.inner.portal.host();
    format!(
        "<h1>Allow {name} to work with your Bitrix24 task results?</h1>\
         <p>{about}</p>\
         <dl><dt>If you allow, it will be able to</dt>\
         <dd>read, add, change and delete task results as you, on <strong>{portal}</strong> \
         (and read your tasks' chat messages to quote them in results).</dd>\
         <dt>Your browser will then go back to</dt><dd>{back}</dd></dl>\
         <p>Allow only if you started this sign-in yourself, just now, from your MCP client. \
         If you allow, you sign in on {portal} next; if you deny, nothing is sent to the portal.</p>\
         <form method=\"post\" action=\"{CONSENT_PATH}\">\
         <input type=\"hidden\" name=\"consent\" value=\"{id}\">\
         <div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></div></form>\
         <p class=\"small\">Bitrix24 task results MCP server</p>",
        name = e(&name),
        about = about,
        portal = e(&portal),
        back = redirect_target(redirect_uri),
        id = e(consent_id),
    )
}

/// The client's name to show, and a sentence (HTML) on where it comes from.
fn client_name(client: &ClientRecord) -> (String, String) {
    let e = page::escape;
    // A metadata document's client id is its URL: its host is checked, its name is not.
    if let Ok(url) = Url::parse(&client.client_id)
        && let Some(host) = url.host_str()
    {
        let name = host.to_string();
        let about = format!(
            "The client is described by a document on <strong>{}</strong>, which names it.",
            e(&name)
        );
        return (name, about);
    }
    match client.client_name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => {
            let mut name: String = n.chars().take(NAME_CHARS).collect();
            if n.chars().count() > NAME_CHARS {
                name.push('…');
            }
            let about = format!(
                "An MCP client registered here under the name <strong>{}</strong> asks to use this \
                 server as you. The name is what the client says of itself; this server has not checked it.",
                e(&name)
            );
            (format!("“{name}”"), about)
        }
        _ => (
            "an unnamed client".to_string(),
            "An MCP client registered here without a name asks to use this server as you.".into(),
        ),
    }
}

/// The redirect URI's scheme, host, port and path, as HTML.
fn redirect_target(uri: &str) -> String {
    let e = page::escape;
    let Ok(url) = Url::parse(uri) else {
        return format!("<code>{}</code>", e(uri));
    };
    let mut parts = vec![format!("scheme <code>{}</code>", e(url.scheme()))];
    if let Some(host) = url.host_str() {
        let local = if super::is_loopback(&url) {
            " (this computer)"
        } else {
            ""
        };
        parts.push(format!("host <code>{}</code>{local}", e(host)));
    }
    if let Some(port) = url.port_or_known_default() {
        parts.push(format!("port <code>{port}</code>"));
    }
    parts.push(format!("path <code>{}</code>", e(url.path())));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, name: Option<&str>) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            client_name: name.map(str::to_string),
            redirect_uris: vec![],
            created_at: 0,
            secret_hash: None,
        }
    }

    #[test]
    fn the_client_is_named_by_its_registration_or_its_document_host() {
        let (name, about) = client_name(&client("c1", Some("<b>Cursor</b>\n")));
        assert_eq!(name, "“<b>Cursor</b>”");
        assert!(about.contains("&lt;b&gt;Cursor&lt;/b&gt;"), "{about}");
        let (name, _) = client_name(&client(
            "https://claude.ai/oauth/claude-code-client-metadata",
            Some("Claude Code"),
        ));
        assert_eq!(name, "claude.ai");
        let (name, _) = client_name(&client("c2", None));
        assert_eq!(name, "an unnamed client");
        let (name, _) = client_name(&client("c3", Some(&"x".repeat(500))));
        assert_eq!(name.chars().count(), NAME_CHARS + 3);
    }

    #[test]
    fn the_redirect_target_shows_scheme_host_port_and_path() {
        assert_eq!(
            redirect_target("http://127.0.0.1:33418/callback?x=1"),
            "scheme <code>http</code>, host <code>127.0.0.1</code> (this computer), \
             port <code>33418</code>, path <code>/callback</code>"
        );
        assert_eq!(
            redirect_target("https://evil.example/a\"b"),
            "scheme <code>https</code>, host <code>evil.example</code>, port <code>443</code>, \
             path <code>/a%22b</code>"
        );
        assert_eq!(
            redirect_target("com.example.app:/oauth"),
            "scheme <code>com.example.app</code>, path <code>/oauth</code>"
        );
    }
}
