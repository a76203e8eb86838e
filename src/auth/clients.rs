//! Who a client is: registered here (RFC 7591) or described by a Client ID Metadata
//! Document at its `client_id` URL; and which redirect URIs it may use.
//!
//! The metadata fetch is the one request this server makes to an address a stranger
//! chooses, so it is fenced: https only (http for loopback hosts, for tests), 5 s, 64 KiB,
//! no redirects, and a resolver that drops private, link-local and other non-public
//! addresses, so the fetch cannot probe the server's own network (checked on the
//! addresses actually connected to, which also defeats DNS rebinding). Loopback
//! addresses are allowed only when this server itself is reached on loopback (the
//! sandbox and tests): a public server never fetches from its own machine.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use crate::store::{ClientRecord, Store, StoreError};

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How long a fetched document is trusted before it is fetched again.
const CACHE_TTL: Duration = Duration::from_secs(600);
const CACHE_CAP: usize = 1000;

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

/// Finds clients, by registration or by metadata document.
pub struct Clients {
    store: Arc<dyn Store>,
    allow_loopback: bool,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (ClientRecord, Instant)>>,
}

impl Clients {
    /// Clients registered in `store`, or described at their URL; `allow_loopback` lets
    /// metadata documents live on this machine.
    pub fn new(store: Arc<dyn Store>, allow_loopback: bool) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(PublicOnly { allow_loopback }))
            .user_agent(crate::bitrix::USER_AGENT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            store,
            allow_loopback,
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client `client_id`.
    pub async fn find(&self, client_id: &str) -> Result<ClientRecord, ClientError> {
        if is_metadata_url(client_id, self.allow_loopback) {
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

    async fn document(&self, url: &str) -> Result<ClientRecord, ClientError> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(record, _)| record.clone());
        if let Some(record) = cached {
            return Ok(record);
        }
        let record = self.fetch(url).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAP {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
        }
        cache.insert(url.to_string(), (record.clone(), Instant::now()));
        Ok(record)
    }

    async fn fetch(&self, url: &str) -> Result<ClientRecord, ClientError> {
        let unusable = |why: &str| {
            ClientError::Unknown(format!(
                "the client metadata document at {} cannot be used: {why}",
                short(url)
            ))
        };
        let parsed = Url::parse(url).map_err(|_| unusable("not a URL"))?;
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = parsed.host() {
            // IP literals skip the resolver, so they are checked here.
            let ip: IpAddr = match parsed.host() {
                Some(url::Host::Ipv4(v4)) => v4.into(),
                Some(url::Host::Ipv6(v6)) => v6.into(),
                _ => unreachable!("matched above"),
            };
            if !(is_public(ip) || self.allow_loopback && ip.is_loopback()) {
                return Err(unusable("its address is not public"));
            }
        }
        let mut response = self
            .http
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unusable(&format!("fetching it failed ({})", e.without_url())))?;
        if !response.status().is_success() {
            return Err(unusable(&format!("HTTP {}", response.status().as_u16())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| unusable("reading it failed"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(unusable("larger than 64 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Document = serde_json::from_slice(&body)
            .map_err(|_| unusable("not a client metadata JSON document"))?;
        if doc.client_id != url {
            return Err(unusable("its client_id is not the URL it was fetched from"));
        }
        if doc
            .token_endpoint_auth_method
            .as_deref()
            .is_some_and(|m| m != "none")
        {
            return Err(unusable(
                "only public clients (token_endpoint_auth_method none) are supported",
            ));
        }
        if doc.redirect_uris.is_empty()
            || !doc.redirect_uris.iter().all(|u| redirect_uri_allowed(u))
        {
            return Err(unusable("its redirect_uris are missing or not allowed"));
        }
        Ok(ClientRecord {
            client_id: doc.client_id,
            client_name: doc.client_name,
            redirect_uris: doc.redirect_uris,
            created_at: crate::auth::now(),
        })
    }
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
}

/// Whether `client_id` names a metadata document: an https URL with a path (or, with
/// `allow_loopback`, http on a loopback host).
pub fn is_metadata_url(client_id: &str, allow_loopback: bool) -> bool {
    let Ok(url) = Url::parse(client_id) else {
        return false;
    };
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => allow_loopback && is_loopback_host(&url),
        _ => false,
    };
    scheme_ok && url.path() != "/" && url.fragment().is_none() && url.username().is_empty()
}

/// Whether a client may register `uri` as a redirect URI: https anywhere, http only on
/// loopback hosts (RFC 8252 §7.3), or an app's private-use scheme (`cursor://…`).
pub fn redirect_uri_allowed(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    if url.fragment().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => is_loopback_host(&url),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ftp" | "ws" | "wss" => {
            false
        }
        _ => true,
    }
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
        if a.scheme() != "http" || !is_loopback_host(&a) {
            return false;
        }
        let _ = a.set_port(None);
        let _ = b.set_port(None);
        a == b
    })
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether `ip` is an address on the public internet (not private, loopback, link-local,
/// shared, documentation, multicast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves names to public addresses only (and loopback ones when allowed).
struct PublicOnly {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()) || (allow_loopback && a.ip().is_loopback()))
                .collect();
            if addrs.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A client id short enough for a page (registered ids are uuids; URLs can be long).
fn short(s: &str) -> String {
    s.chars().take(120).collect()
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
        assert!(redirect_uri_allowed("https://vscode.dev/redirect"));
        assert!(redirect_uri_allowed("http://localhost:3000/cb"));
        assert!(redirect_uri_allowed(
            "cursor://anysphere.cursor-retrieval/oauth/callback"
        ));
        assert!(!redirect_uri_allowed("http://evil.example/cb"));
        assert!(!redirect_uri_allowed("javascript:alert(1)"));
        assert!(!redirect_uri_allowed("https://app.example/cb#frag"));
    }

    #[test]
    fn metadata_urls_and_public_addresses() {
        assert!(is_metadata_url("https://client.example/mcp.json", false));
        assert!(!is_metadata_url("https://client.example/", false));
        assert!(!is_metadata_url("http://client.example/doc", true));
        assert!(is_metadata_url("http://127.0.0.1:9/doc", true));
        assert!(!is_metadata_url("http://127.0.0.1:9/doc", false));
        assert!(!is_metadata_url(
            "4b1e7d1c-0000-4000-8000-000000000000",
            true
        ));
        for private in [
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1".parse().unwrap()));
    }
}
