//! Client ID Metadata Documents: a client names itself by an https URL, and this server
//! fetches the JSON document there to learn its redirect URIs.
//!
//! That fetch is the one request this server makes to a place a stranger chooses, so it
//! is fenced:
//! - the `client_id` itself: at most [`MAX_CLIENT_ID_BYTES`], in its normal URL form (so
//!   no control characters, `..` segments or other spellings the parser would rewrite),
//!   https (http only on loopback when this server is on loopback, for tests), no query,
//!   fragment or user name, and never one of this server's own names (a document here
//!   would make the server fetch itself, and nest: one request, thousands of fetches);
//! - the connection: directly (never through an environment proxy, which would resolve
//!   the name where the fence cannot see it), to public addresses only (checked on the
//!   addresses actually connected to, which also defeats DNS rebinding), no redirects,
//!   5 s, 64 KiB, at most [`MAX_CONCURRENT_FETCHES`] at once; every fetch carries
//!   [`FETCH_MARK`], and an `/authorize` request carrying it never fetches, so a fetch
//!   never triggers a fetch even through a name this server does not know is its own;
//! - the answer: JSON naming the same `client_id`, a public client, redirect URIs by the
//!   same rules and bounds as registration.
//!
//! What went wrong is logged at warn with the URL (escaped) and a cause class; the person
//! sees the cause in words chosen here, never the upstream's status or text, so the page
//! is no oracle for probing (DNS failures and non-public addresses read alike; every
//! status but 200 reads "did not answer with the document").
//!
//! Over 600 lines: the fence rules and their tests (a third of the file) read as one list
//! of what a stranger may not make this server fetch; split, a rule would lose its test.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::client_rules::{RedirectUriProblem, check_client_name, check_redirect_uris};
use super::fence::is_public;
use crate::store::ClientRecord;

/// Longest `client_id` URL accepted; real documents live at short addresses.
pub const MAX_CLIENT_ID_BYTES: usize = 256;
/// Fetches running at once; beyond that a sign-in is told to try again.
pub const MAX_CONCURRENT_FETCHES: usize = 8;
/// Header on every document fetch; `/authorize` refuses to fetch when it sees it.
pub const FETCH_MARK: &str = "x-mcp-client-metadata-fetch";
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How long a fetched document is trusted before it is fetched again.
const CACHE_TTL: Duration = Duration::from_secs(600);
/// Bounds of the document cache (each record is itself bounded by the registration rules).
const CACHE_ENTRIES: usize = 256;
const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Why a document cannot be used: a class for the log, a sentence for the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Longer than [`MAX_CLIENT_ID_BYTES`].
    TooLong,
    /// Not an https URL in its normal form, or with a query, fragment or user name.
    Shape,
    /// Names this server itself.
    OwnServer,
    /// An IP literal that is not public.
    NotPublicAddress,
    /// The name does not resolve, or only to non-public addresses.
    Dns,
    /// The TCP connection failed.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// No complete answer within the time limit.
    Timeout,
    /// An answer other than 200 (redirects included: they are not followed).
    Status,
    /// Larger than 64 KiB.
    Size,
    /// Not a JSON client metadata document.
    NotJson,
    /// Its `client_id` is not the URL it was fetched from.
    ClientIdMismatch,
    /// Asks for a client secret (documents describe public clients only).
    NotPublicClient,
    /// `redirect_uris` missing, too many, too long or not allowed.
    RedirectUris,
    /// `client_name` too long or with control characters.
    ClientName,
    /// Too many fetches running.
    Busy,
    /// The request came from a document fetch.
    Nested,
}

impl Cause {
    /// The class written to the log.
    pub fn name(self) -> &'static str {
        match self {
            Cause::TooLong => "too_long",
            Cause::Shape => "shape",
            Cause::OwnServer => "own_server",
            Cause::NotPublicAddress => "not_public_address",
            Cause::Dns => "dns",
            Cause::Connect => "connect",
            Cause::Tls => "tls",
            Cause::Timeout => "timeout",
            Cause::Status => "status",
            Cause::Size => "size",
            Cause::NotJson => "not_json",
            Cause::ClientIdMismatch => "client_id_mismatch",
            Cause::NotPublicClient => "not_public_client",
            Cause::RedirectUris => "redirect_uris",
            Cause::ClientName => "client_name",
            Cause::Busy => "busy",
            Cause::Nested => "nested",
        }
    }

    /// What the person is told.
    pub fn says(self) -> String {
        match self {
            Cause::TooLong => format!("its client_id is longer than {MAX_CLIENT_ID_BYTES} bytes"),
            Cause::Shape => "its client_id is not a plain https URL (written in its normal form, with a path, \
                 and without query, fragment, user name or control characters)"
                .into(),
            Cause::OwnServer => "its client_id points at this server itself".into(),
            Cause::NotPublicAddress | Cause::Dns => {
                "its host name does not lead to a public internet address (or cannot be looked up from this server)".into()
            }
            Cause::Connect => "this server could not connect to its host".into(),
            Cause::Tls => "the secure (TLS) connection to its host failed".into(),
            Cause::Timeout => "its host did not answer in time".into(),
            Cause::Status => "its host answered, but not with the document".into(),
            Cause::Size => "it is larger than 64 KiB".into(),
            Cause::NotJson => "it is not a JSON client metadata document".into(),
            Cause::ClientIdMismatch => "its client_id is not the URL it was fetched from".into(),
            Cause::NotPublicClient => {
                "only public clients (token_endpoint_auth_method none) are supported".into()
            }
            Cause::RedirectUris => "its redirect_uris are missing, too many, too long or not allowed \
                 (https, http on a loopback address, or an app's own reverse-domain scheme)"
                .into(),
            Cause::ClientName => "its client_name is too long or contains control characters".into(),
            Cause::Busy => "this server is fetching too many client documents right now; try again in a moment".into(),
            Cause::Nested => "the request came from a client document fetch".into(),
        }
    }

    /// Whether the cause is about reaching the document at all (what turning documents
    /// off cures when this server has no way out to the internet).
    pub fn unreachable(self) -> bool {
        matches!(
            self,
            Cause::Dns | Cause::Connect | Cause::Tls | Cause::Timeout
        )
    }
}

/// A document that cannot be used, with what the log may add (ours, never the upstream's
/// text).
#[derive(Debug)]
pub struct Refusal {
    /// The class.
    pub cause: Cause,
    /// For the log only, e.g. `HTTP 404`.
    pub detail: Option<String>,
}

impl From<Cause> for Refusal {
    fn from(cause: Cause) -> Self {
        Refusal {
            cause,
            detail: None,
        }
    }
}

/// Whether `client_id` means to name a metadata document (an http(s) URL); whether it is
/// a usable one is [`check_client_id`]'s question.
pub fn is_document_id(client_id: &str) -> bool {
    let lower = client_id
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// This server's own names: a document there would be a fetch of itself. A non-loopback
/// name is ours on every port; a loopback one (any loopback address, or `localhost`) on
/// the ports this server listens on, so test documents may live beside it on loopback.
#[derive(Debug, Clone, Default)]
pub struct OwnNames {
    any_port: Vec<String>,
    loopback_ports: Vec<u16>,
    exact: Vec<(String, u16)>,
}

impl OwnNames {
    /// The names of a server reached at `public_url`, listening on `listen`, accepting
    /// the Host names `hosts` (`name` or `name:port`, as `--allowed-host`).
    pub fn new(public_url: &Url, listen: Option<SocketAddr>, hosts: &[String]) -> OwnNames {
        let mut own = OwnNames::default();
        if let Some(host) = public_url.host_str() {
            own.add(host, public_url.port_or_known_default());
        }
        if let Some(addr) = listen {
            if addr.ip().is_loopback() || addr.ip().is_unspecified() {
                own.loopback_ports.push(addr.port());
            }
            own.add(&addr.ip().to_string(), Some(addr.port()));
        }
        for entry in hosts {
            let (host, port) = match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse::<u16>().ok()),
                _ => (entry.as_str(), None),
            };
            if port.is_some() || !is_loopback_name(&normal_host(host)) {
                own.add(host, port);
            }
        }
        own
    }

    fn add(&mut self, host: &str, port: Option<u16>) {
        let host = normal_host(host);
        if is_loopback_name(&host) {
            if let Some(port) = port {
                self.loopback_ports.push(port);
            }
        } else if let Some(port) = port.filter(|_| host.parse::<IpAddr>().is_ok()) {
            // An IP literal (the listen address): that port only. A name is ours on every
            // port, since a proxy in front of it may forward any of them.
            self.exact.push((host, port));
        } else {
            self.any_port.push(host);
        }
    }

    /// Whether `url` names this server.
    pub fn contains(&self, url: &Url) -> bool {
        let Some(host) = url.host_str().map(normal_host) else {
            return false;
        };
        let port = url.port_or_known_default().unwrap_or(0);
        if is_loopback_name(&host) {
            return self.loopback_ports.contains(&port);
        }
        self.any_port.contains(&host) || self.exact.iter().any(|(h, p)| *h == host && *p == port)
    }
}

fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok_and(|ip| {
        ip.is_loopback() || ip.is_unspecified() || {
            // ::ffff:127.0.0.1 reaches the IPv4 loopback on a dual-stack socket.
            matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
    })
}

/// The checks on a document `client_id` before anything is fetched; its URL when usable.
pub fn check_client_id(id: &str, allow_loopback: bool, own: &OwnNames) -> Result<Url, Cause> {
    if id.len() > MAX_CLIENT_ID_BYTES {
        return Err(Cause::TooLong);
    }
    let url = Url::parse(id).map_err(|_| Cause::Shape)?;
    // The parser drops control characters, resolves `..` and rewrites other spellings;
    // only an id already in its normal form is the same id everywhere (logs, pages,
    // the document's own client_id).
    if url.as_str() != id {
        return Err(Cause::Shape);
    }
    let loopback_host = url
        .host_str()
        .is_some_and(|h| is_loopback_name(&normal_host(h)));
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => allow_loopback && loopback_host,
        _ => false,
    };
    if !scheme_ok
        || url.path() == "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(Cause::Shape);
    }
    if own.contains(&url) {
        return Err(Cause::OwnServer);
    }
    // IP literals skip the resolver, so they are checked here.
    let literal: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    };
    if let Some(ip) = literal
        && !(is_public(ip) || allow_loopback && ip.is_loopback())
    {
        return Err(Cause::NotPublicAddress);
    }
    if loopback_host && !allow_loopback {
        return Err(Cause::NotPublicAddress);
    }
    Ok(url)
}

/// The fenced fetcher of metadata documents (also used by `doctor --oauth`).
pub struct Fetcher {
    http: reqwest::Client,
    permits: Arc<Semaphore>,
}

impl Fetcher {
    /// A fetcher that connects to public addresses only (and loopback ones when
    /// `allow_loopback`).
    pub fn new(allow_loopback: bool) -> Fetcher {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // An environment proxy would resolve the name itself, out of the fence's sight.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(PublicOnly { allow_loopback }))
            .user_agent(crate::bitrix::USER_AGENT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Fetcher {
            http,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_FETCHES)),
        }
    }

    /// Fetches and checks the document at `url` (already through [`check_client_id`]).
    pub async fn fetch(&self, url: &Url) -> Result<ClientRecord, Refusal> {
        let Ok(_permit) = self.permits.try_acquire() else {
            return Err(Cause::Busy.into());
        };
        let mut response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(FETCH_MARK, "1")
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(Refusal {
                cause: Cause::Status,
                detail: Some(format!("HTTP {}", status.as_u16())),
            });
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                        return Err(Cause::Size.into());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(classify(&e)),
            }
        }
        let doc: Document = serde_json::from_slice(&body).map_err(|_| Cause::NotJson)?;
        document_record(doc, url.as_str())
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

fn document_record(doc: Document, url: &str) -> Result<ClientRecord, Refusal> {
    if doc.client_id != url {
        return Err(Cause::ClientIdMismatch.into());
    }
    if doc
        .token_endpoint_auth_method
        .as_deref()
        .is_some_and(|m| m != "none")
    {
        return Err(Cause::NotPublicClient.into());
    }
    if let Err(problem) = check_redirect_uris(&doc.redirect_uris) {
        return Err(Refusal {
            cause: Cause::RedirectUris,
            detail: Some(problem.to_string()),
        });
    }
    if let Some(name) = &doc.client_name
        && check_client_name(name).is_err()
    {
        return Err(Cause::ClientName.into());
    }
    Ok(ClientRecord {
        client_id: doc.client_id,
        client_name: doc.client_name,
        redirect_uris: doc.redirect_uris,
        created_at: crate::clock::now_s(),
        secret_hash: None,
    })
}

impl From<RedirectUriProblem> for Refusal {
    fn from(p: RedirectUriProblem) -> Self {
        Refusal {
            cause: Cause::RedirectUris,
            detail: Some(p.to_string()),
        }
    }
}

/// The class of a failed request, from reqwest's error and its sources.
fn classify(e: &reqwest::Error) -> Refusal {
    let mut cause = if e.is_timeout() {
        Cause::Timeout
    } else {
        Cause::Connect
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // The resolver's error arrives boxed again by the connector; hyper-util names
        // the failure "dns error" (its own fixed words, not the upstream's).
        if s.is::<Unresolvable>() || s.to_string() == "dns error" {
            cause = Cause::Dns;
            break;
        }
        let io_inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if s.downcast_ref::<rustls::Error>().is_some()
            || io_inner.is_some_and(|i| i.is::<rustls::Error>())
        {
            cause = Cause::Tls;
            break;
        }
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            cause = Cause::Timeout;
            break;
        }
        source = s.source();
    }
    Refusal {
        cause,
        // Our own words: reqwest's text may carry the upstream's.
        detail: Some(
            if e.is_body() {
                "the answer broke off"
            } else {
                "no answer"
            }
            .into(),
        ),
    }
}

/// The resolver's refusal: the name does not resolve, or not to a public address.
#[derive(Debug)]
struct Unresolvable(&'static str);

impl std::fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Unresolvable {}

/// Resolves names to public addresses only (and loopback ones when allowed).
struct PublicOnly {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Box::new(Unresolvable("the name does not resolve")))?;
            let addrs: Vec<SocketAddr> = found
                .filter(|a| is_public(a.ip()) || (allow_loopback && a.ip().is_loopback()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(Unresolvable("the name resolves to no public address")) as _);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Fetched documents, bounded in entries and bytes.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, (ClientRecord, Instant, usize)>,
    bytes: usize,
}

impl Cache {
    /// The record for `url`, if fetched within the cache's life.
    pub fn get(&self, url: &str) -> Option<ClientRecord> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(url)
            .filter(|(_, at, _)| at.elapsed() < CACHE_TTL)
            .map(|(r, _, _)| r.clone())
    }

    /// Keeps `record`, making room by dropping expired, then oldest, entries.
    pub fn put(&self, url: &str, record: ClientRecord) {
        let size = url.len()
            + record.client_id.len()
            + record.client_name.as_ref().map_or(0, String::len)
            + record.redirect_uris.iter().map(String::len).sum::<usize>();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, old)) = inner.entries.remove(url) {
            inner.bytes -= old;
        }
        let over =
            |i: &CacheInner| i.entries.len() >= CACHE_ENTRIES || i.bytes + size > CACHE_BYTES;
        if over(&inner) {
            let CacheInner { entries, bytes } = &mut *inner;
            entries.retain(|_, (_, at, n)| {
                let keep = at.elapsed() < CACHE_TTL;
                if !keep {
                    *bytes -= *n;
                }
                keep
            });
        }
        while over(&inner) {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, _, n)) = inner.entries.remove(&oldest) {
                inner.bytes -= n;
            }
        }
        inner.bytes += size;
        inner
            .entries
            .insert(url.to_string(), (record, Instant::now(), size));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnNames {
        OwnNames::new(
            &Url::parse("http://127.0.0.1:8000/").unwrap(),
            Some("127.0.0.1:8000".parse().unwrap()),
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
        )
    }

    #[test]
    fn usable_document_ids() {
        let own = own();
        assert!(check_client_id("https://client.example/mcp.json", false, &own).is_ok());
        assert!(check_client_id("http://127.0.0.1:9/doc", true, &own).is_ok());
        assert!(check_client_id("http://localhost:9/doc", true, &own).is_ok());
    }

    #[test]
    fn malformed_document_ids_are_refused() {
        let own = own();
        let long = format!("https://client.example/{}", "a".repeat(240));
        assert_eq!(check_client_id(&long, false, &own), Err(Cause::TooLong));
        for id in [
            "https://client.example/",
            "https://client.example",
            "https://client.example/doc?x=1",
            "https://client.example/doc?",
            "https://client.example/doc#f",
            "https://user@client.example/doc",
            "https://user:pw@client.example/doc",
            "https://client.example/a/../doc",
            "https://client.example/a/%2e%2e/doc",
            "https://client.example/./doc",
            "https://client.example/doc\nINFO forged",
            "https://client.example/doc\t",
            "https://CLIENT.example/doc",
            "https://client.example:443/doc",
            "HTTPS://client.example/doc",
            "http://client.example/doc",
            "http://127.0.0.1:9/doc",
            "ftp://client.example/doc",
        ] {
            let allow_loopback = !id.starts_with("http://127");
            assert_eq!(
                check_client_id(id, allow_loopback, &own),
                Err(Cause::Shape),
                "{id:?}"
            );
        }
    }

    #[test]
    fn document_ids_naming_this_server_are_refused() {
        let own = own();
        for id in [
            "http://127.0.0.1:8000/authorize",
            "http://localhost:8000/x.json",
            "http://[::1]:8000/x.json",
            "http://127.0.0.2:8000/x.json",
            "http://[::ffff:7f00:1]:8000/x.json",
        ] {
            assert_eq!(
                check_client_id(id, true, &own),
                Err(Cause::OwnServer),
                "{id}"
            );
        }
        let public = OwnNames::new(
            &Url::parse("https://mcp.example.com/").unwrap(),
            Some("0.0.0.0:8000".parse().unwrap()),
            &[
                "localhost".into(),
                "mcp.internal".into(),
                "alias.example:8443".into(),
            ],
        );
        for id in [
            "https://mcp.example.com/authorize",
            "https://MCP.example.com/authorize",
            "https://mcp.example.com:8443/x",
            "https://mcp.internal/x",
            "https://alias.example:8443/x",
        ] {
            let Err(cause) = check_client_id(id, false, &public) else {
                panic!("{id} accepted");
            };
            assert!(
                matches!(cause, Cause::OwnServer | Cause::Shape),
                "{id}: {cause:?}"
            );
        }
        assert_eq!(
            check_client_id("https://mcp.example.com/authorize", false, &public),
            Err(Cause::OwnServer)
        );
        // A name is ours on every port: a proxy in front of it may forward any of them.
        assert_eq!(
            check_client_id("https://alias.example/x", false, &public),
            Err(Cause::OwnServer)
        );
        assert!(check_client_id("https://mcp.example.org/x", false, &public).is_ok());
    }

    #[test]
    fn non_public_literals_are_refused_before_any_fetch() {
        let own = OwnNames::default();
        for id in [
            "https://10.0.0.1/client.json",
            "https://169.254.169.254/latest",
            "https://[::7f00:1]:18090/x",
            "https://[64:ff9b::a9fe:a9fe]/latest",
            "https://[2002:a9fe:a9fe::1]/x",
            "https://[fec0::1]/x",
            "https://[100::1]/x",
            "https://127.0.0.1/x",
            "https://localhost/x",
        ] {
            assert_eq!(
                check_client_id(id, false, &own),
                Err(Cause::NotPublicAddress),
                "{id}"
            );
        }
        // Spelled otherwise than the parser writes it: refused before its address is read.
        assert_eq!(
            check_client_id("https://[::127.0.0.1]:18090/x", false, &own),
            Err(Cause::Shape)
        );
    }

    #[test]
    fn only_http_urls_name_documents() {
        assert!(is_document_id("https://client.example/mcp.json"));
        assert!(is_document_id("HTTP://x"));
        assert!(!is_document_id("4b1e7d1c-0000-4000-8000-000000000000"));
        assert!(!is_document_id("urn:x"));
        assert!(!is_document_id("é"));
    }

    #[tokio::test]
    async fn beyond_the_concurrent_fetches_a_sign_in_is_told_busy() {
        let fetcher = Fetcher::new(true);
        let _all = fetcher
            .permits
            .clone()
            .try_acquire_many_owned(MAX_CONCURRENT_FETCHES as u32)
            .unwrap();
        let url = Url::parse("http://127.0.0.1:9/doc").unwrap();
        assert_eq!(fetcher.fetch(&url).await.unwrap_err().cause, Cause::Busy);
    }

    fn record(n: usize) -> ClientRecord {
        ClientRecord {
            client_id: format!("https://c.example/{n}"),
            client_name: None,
            redirect_uris: vec!["x".repeat(2000); 10],
            created_at: 0,
            secret_hash: None,
        }
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let cache = Cache::default();
        for n in 0..1000 {
            cache.put(&format!("https://c.example/{n}"), record(n));
        }
        assert!(cache.len() <= CACHE_ENTRIES);
        let inner = cache.inner.lock().unwrap();
        assert!(inner.bytes <= CACHE_BYTES);
        assert!(inner.entries.contains_key("https://c.example/999"));
    }

    #[test]
    fn documents_are_checked_like_registrations() {
        let url = "https://c.example/doc";
        let doc = |redirects: Vec<String>, name: Option<&str>| Document {
            client_id: url.into(),
            client_name: name.map(str::to_string),
            redirect_uris: redirects,
            token_endpoint_auth_method: None,
        };
        let ok = vec!["http://127.0.0.1:1/cb".to_string()];
        assert!(document_record(doc(ok.clone(), Some("App")), url).is_ok());
        let cause = |d| document_record(d, url).unwrap_err().cause;
        assert_eq!(cause(doc(vec![], None)), Cause::RedirectUris);
        assert_eq!(
            cause(doc(vec![ok[0].clone(); 11], None)),
            Cause::RedirectUris
        );
        assert_eq!(
            cause(doc(
                vec![format!("https://a.example/{}", "a".repeat(2100))],
                None
            )),
            Cause::RedirectUris
        );
        assert_eq!(
            cause(doc(vec!["ms-msdt:/id".into()], None)),
            Cause::RedirectUris
        );
        assert_eq!(
            cause(doc(ok.clone(), Some("a\nINFO forged"))),
            Cause::ClientName
        );
        let mut other = doc(ok.clone(), None);
        other.client_id = "https://c.example/other".into();
        assert_eq!(cause(other), Cause::ClientIdMismatch);
        let mut secret = doc(ok, None);
        secret.token_endpoint_auth_method = Some("client_secret_post".into());
        assert_eq!(cause(secret), Cause::NotPublicClient);
    }
}
