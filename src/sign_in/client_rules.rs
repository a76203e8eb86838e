//! Which redirect URIs and names a client may have: the same rules and bounds for a
//! registration (`clients`) and a metadata document (`documents`), kept apart from both so
//! that neither imports the other.

use reqwest::Url;

/// At most this many redirect URIs per client; real clients register one to three.
pub const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI; real ones are well under 200 bytes.
pub const MAX_REDIRECT_URI_BYTES: usize = 2048;
/// Longest client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 200;
/// Private-use schemes without a dot that real MCP clients register
/// (`cursor://anysphere.cursor-mcp/oauth/callback`, and VS Code's and Windsurf's own),
/// allowed by name: RFC 8252 §7.1 asks for reverse-domain schemes, which these predate.
pub const KNOWN_APP_SCHEMES: [&str; 4] = ["cursor", "vscode", "vscode-insiders", "windsurf"];

/// What is wrong with a client's redirect URIs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriProblem {
    /// None, or more than [`MAX_REDIRECT_URIS`].
    #[error("give one to ten redirect_uris")]
    Count,
    /// One longer than [`MAX_REDIRECT_URI_BYTES`].
    #[error("a redirect URI is longer than 2048 bytes")]
    TooLong,
    /// One whose form is not allowed (the URI, shortened).
    #[error(
        "`{0}` is not allowed: use https, http on a loopback address, or an app's own \
         reverse-domain scheme (com.example.app:/callback), without user name or fragment"
    )]
    NotAllowed(String),
}

/// The redirect URI rules for registrations and documents alike.
pub fn check_redirect_uris(uris: &[String]) -> Result<(), RedirectUriProblem> {
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return Err(RedirectUriProblem::Count);
    }
    if uris.iter().any(|u| u.len() > MAX_REDIRECT_URI_BYTES) {
        return Err(RedirectUriProblem::TooLong);
    }
    match uris.iter().find(|u| !redirect_uri_allowed(u)) {
        Some(bad) => Err(RedirectUriProblem::NotAllowed(short(bad))),
        None => Ok(()),
    }
}

/// Whether a client may register `uri` as a redirect URI: https anywhere, http only on
/// loopback hosts (RFC 8252 §7.3), or an app's private-use scheme in reverse-domain form
/// (RFC 8252 §7.1, `com.example.app:/cb`) or one of [`KNOWN_APP_SCHEMES`]; never with a
/// user name (`https://good.example@evil.example/` reads as one host and goes to
/// another), a fragment or control characters.
pub fn redirect_uri_allowed(uri: &str) -> bool {
    if uri.len() > MAX_REDIRECT_URI_BYTES || uri.chars().any(char::is_control) {
        return false;
    }
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => super::is_loopback(&url),
        scheme if KNOWN_APP_SCHEMES.contains(&scheme) => url.host().is_some(),
        scheme => scheme.contains('.'),
    }
}

/// A client name fit for a page and a log: at most [`MAX_CLIENT_NAME_CHARS`], no
/// control or bidirectional-override characters (which could make a name read as
/// another on the consent page).
pub fn check_client_name(name: &str) -> Result<(), &'static str> {
    if name.chars().count() > MAX_CLIENT_NAME_CHARS {
        return Err("client_name is longer than 200 characters");
    }
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err("client_name contains control characters");
    }
    Ok(())
}

/// Whether `presented` matches one of `registered`: exactly, or for a loopback redirect
/// URI with any port (RFC 8252 §7.3: native apps pick a free port each time).
pub fn redirect_uri_matches(registered: &[String], presented: &str) -> bool {
    registered.iter().any(|r| {
        if r == presented {
            return true;
        }
        let (Ok(mut a), Ok(mut b)) = (Url::parse(r), Url::parse(presented)) else {
            return false;
        };
        if a.scheme() != "http" || !super::is_loopback(&a) {
            return false;
        }
        let _ = a.set_port(None);
        let _ = b.set_port(None);
        a == b
    })
}

/// A client id short enough for a page (registered ids are uuids; URLs can be long).
pub(super) fn short(s: &str) -> String {
    s.chars().take(120).collect()
}
