//! Who a client is: registered here (RFC 7591) or described by a Client ID Metadata
//! Document at its `client_id` URL (fetched and fenced in `documents`). Which redirect
//! URIs and names a client may have is `client_rules`, the same for both.

use super::client_rules::short;
pub use super::client_rules::{
    KNOWN_APP_SCHEMES, MAX_CLIENT_NAME_CHARS, MAX_REDIRECT_URI_BYTES, MAX_REDIRECT_URIS,
    RedirectUriProblem, check_client_name, check_redirect_uris, redirect_uri_allowed,
    redirect_uri_matches,
};
use super::documents::{Cache, Cause, Fetcher, OwnNames, Refusal, check_client_id, is_document_id};
use crate::store::{ClientRecord, Store, StoreError};
use std::sync::Arc;

/// Why a client cannot go on; shown on an error page, never redirected to.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No such registered client, or a metadata document that cannot be used.
    #[error("{0}")]
    Unknown(String),
    /// The store could not answer.
    #[error("the sign-in store is unavailable: {0}")]
    Store(#[from] StoreError),
}

/// How clients may identify themselves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whether metadata documents are advertised and fetched
    /// (`--client-metadata-documents`).
    pub documents: bool,
    /// This server's own names, which a document URL may never use.
    pub own: OwnNames,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            documents: true,
            own: OwnNames::default(),
        }
    }
}

/// Finds clients, by registration or by metadata document.
pub struct Clients {
    store: Arc<dyn Store>,
    allow_loopback: bool,
    options: ClientOptions,
    fetcher: Fetcher,
    cache: Cache,
}

impl Clients {
    /// Clients registered in `store`, or described at their URL; `allow_loopback` lets
    /// metadata documents live on this machine.
    pub fn new(store: Arc<dyn Store>, allow_loopback: bool, options: ClientOptions) -> Self {
        Self {
            store,
            allow_loopback,
            options,
            fetcher: Fetcher::new(allow_loopback),
            cache: Cache::default(),
        }
    }

    /// Whether metadata documents are on.
    pub fn documents_on(&self) -> bool {
        self.options.documents
    }

    /// The client `client_id`.
    pub async fn find(&self, client_id: &str) -> Result<ClientRecord, ClientError> {
        if is_document_id(client_id) {
            if !self.options.documents {
                tracing::info!(
                    client = ?client_id,
                    "a client named itself by a metadata document, which are off here"
                );
                return Err(ClientError::Unknown(DOCUMENTS_OFF.into()));
            }
            return self.document(client_id).await;
        }
        self.store
            .client(client_id)
            .await?
            .ok_or_else(|| ClientError::Unknown(format!(
                "the client id `{}` is not registered here; remove this server from your MCP client and add it again",
                short(client_id)
            )))
    }

    /// Refuses a document request that came from a document fetch (see
    /// [`super::documents::FETCH_MARK`]), without fetching.
    pub fn refuse_nested(&self, client_id: &str) -> ClientError {
        refuse(client_id, None, Cause::Nested.into())
    }

    async fn document(&self, id: &str) -> Result<ClientRecord, ClientError> {
        let url = check_client_id(id, self.allow_loopback, &self.options.own)
            .map_err(|cause| refuse(id, None, cause.into()))?;
        if let Some(record) = self.cache.get(id) {
            return Ok(record);
        }
        let record = self
            .fetcher
            .fetch(&url)
            .await
            .map_err(|r| refuse(id, url.host_str(), r))?;
        self.cache.put(id, record.clone());
        Ok(record)
    }
}

/// What a person is told when their client names itself by a document and documents
/// are off.
const DOCUMENTS_OFF: &str = "This client names itself by a client ID metadata document (a URL), and this \
     server has client ID metadata documents turned off (--client-metadata-documents off), so \
     clients register with it instead. Remove this server from your MCP client and add it \
     again (or sign in again): the client then registers here by itself.";

/// Logs why the document `id` cannot be used (URL escaped, cause class) and words it
/// for the page; the page names the host only once it was looked up (`host`).
fn refuse(id: &str, host: Option<&str>, r: Refusal) -> ClientError {
    tracing::warn!(
        url = ?id,
        cause = r.cause.name(),
        detail = ?r.detail.as_deref().unwrap_or(""),
        "a client metadata document cannot be used"
    );
    let whose = match host {
        Some(h) => format!("The client names itself by a client metadata document on {h}"),
        None => "The client names itself by a client metadata document".into(),
    };
    let mut text = format!("{whose}, which cannot be used: {}.", r.cause.says());
    if r.cause.unreachable() || r.cause == Cause::Status {
        text.push_str(
            " If this server cannot reach the internet, its operator can turn client metadata \
             documents off (--client-metadata-documents off, or MCP_CLIENT_METADATA_DOCUMENTS=off): \
             clients then register with this server instead.",
        );
    }
    ClientError::Unknown(text)
}

/// Whether `client_id` names a metadata document (an http(s) URL; see
/// [`super::documents::check_client_id`] for whether it is a usable one). Registered ids are
/// uuids, so the two never meet. `_allow_loopback` is kept for the callers' signature.
pub fn is_metadata_url(client_id: &str, _allow_loopback: bool) -> bool {
    is_document_id(client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_others_exactly() {
        let reg = vec![
            "http://127.0.0.1:33418/callback".to_string(),
            "https://app.example/cb".to_string(),
        ];
        assert!(redirect_uri_matches(&reg, "http://127.0.0.1:5555/callback"));
        assert!(!redirect_uri_matches(&reg, "http://127.0.0.1:5555/other"));
        assert!(redirect_uri_matches(&reg, "https://app.example/cb"));
        assert!(!redirect_uri_matches(&reg, "https://app.example/cb/"));
        assert!(!redirect_uri_matches(&reg, "https://app.example:8443/cb"));
    }

    #[test]
    fn which_redirect_uris_may_be_registered() {
        for ok in [
            "https://vscode.dev/redirect",
            "http://127.0.0.1:33418",
            "http://localhost:3000/cb",
            "http://[::1]:3000/cb",
            "cursor://anysphere.cursor-retrieval/oauth/callback",
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "vscode://vscode.github-authentication/did-authenticate",
            "com.example.app:/oauth2redirect",
            "com.example.app://callback",
        ] {
            assert!(redirect_uri_allowed(ok), "{ok}");
        }
        for bad in [
            "http://evil.example/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "ms-msdt:/id PCWDiagnostic",
            "myapp://callback",
            "cursor:no-host",
            "https://app.example/cb#frag",
            "https://mcp.example.com:443@evil.example/y",
            "https://user@app.example/cb",
            "http://user:pw@127.0.0.1:1/cb",
            "https://app.example/cb\nx",
            "https:///",
        ] {
            assert!(!redirect_uri_allowed(bad), "{bad}");
        }
        let long = format!("https://a.example/{}", "a".repeat(MAX_REDIRECT_URI_BYTES));
        assert!(!redirect_uri_allowed(&long));
    }

    #[test]
    fn redirect_uri_lists_are_bounded() {
        let one = "http://127.0.0.1:1/cb".to_string();
        assert_eq!(check_redirect_uris(std::slice::from_ref(&one)), Ok(()));
        assert_eq!(check_redirect_uris(&[]), Err(RedirectUriProblem::Count));
        assert_eq!(
            check_redirect_uris(&vec![one.clone(); MAX_REDIRECT_URIS + 1]),
            Err(RedirectUriProblem::Count)
        );
        assert_eq!(
            check_redirect_uris(&[format!("https://a.example/{}", "a".repeat(3000))]),
            Err(RedirectUriProblem::TooLong)
        );
        assert!(matches!(
            check_redirect_uris(&[one, "ms-msdt:/x".into()]),
            Err(RedirectUriProblem::NotAllowed(_))
        ));
    }

    #[test]
    fn client_names_are_bounded_and_plain() {
        assert!(check_client_name("Claude Code").is_ok());
        assert!(check_client_name(&"é".repeat(MAX_CLIENT_NAME_CHARS)).is_ok());
        assert!(check_client_name(&"a".repeat(MAX_CLIENT_NAME_CHARS + 1)).is_err());
        assert!(check_client_name("a\nINFO forged").is_err());
        assert!(check_client_name("a\u{1b}[2J").is_err());
        assert!(check_client_name("Claude \u{202e}edoC").is_err());
    }
}
