//! Host allow-list and Origin validation (DNS-rebinding and cross-site defence), applied
//! alike to `/mcp`, `/sse` and `/message`.
//!
//! rmcp checks Host (and Origin, when given a list) on `/mcp` only; the legacy SSE routes
//! are ours. One policy parsed once at start-up guards every MCP route, and the same lists
//! are handed to rmcp (see [`HostOriginPolicy::rmcp_hosts`]) so its own check on `/mcp`
//! can never disagree with ours.
//!
//! Rules (the MCP transport specification's, and rmcp's semantics):
//! - Host: an entry without a port matches any port; `name:port` only that port; a
//!   missing or malformed Host is a 400, a Host not in the list a 403.
//! - Origin: requests without `Origin` pass (non-browser clients send none); a present
//!   Origin must match an entry by scheme, host and port (`:*` = any port, no port = the
//!   scheme's default port, `null` = the browser's opaque origin), else 403.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header, uri::Authority};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Host names every local server accepts.
pub const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Browser origins accepted by default: pages served from this machine, any port.
pub const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// The parsed allow-lists. Cheap to clone.
#[derive(Clone)]
pub struct HostOriginPolicy {
    hosts: Arc<[HostRule]>,
    origins: Arc<[OriginRule]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HostRule {
    host: String,
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OriginRule {
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: PortRule,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortRule {
    Any,
    Exact(u16),
}

/// Why a request was turned away.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No usable Host header (400).
    BadHost,
    /// Host not in the allow-list (403).
    ForeignHost,
    /// Origin present but not allowed or unreadable (403).
    ForeignOrigin,
}

impl HostOriginPolicy {
    /// The loopback defaults plus `extra_hosts` (`name` or `name:port`) and
    /// `extra_origins` (`scheme://host[:port|:*]` or `null`). Errors name the bad entry.
    pub fn new(extra_hosts: &[String], extra_origins: &[String]) -> Result<Self, String> {
        let mut hosts = Vec::new();
        for entry in LOOPBACK_HOSTS
            .iter()
            .copied()
            .chain(extra_hosts.iter().map(String::as_str))
        {
            let rule = parse_host_entry(entry).ok_or_else(|| {
                format!("--allowed-host `{entry}` is not a host name or host:port")
            })?;
            if !hosts.contains(&rule) {
                hosts.push(rule);
            }
        }
        let mut origins = Vec::new();
        for entry in LOOPBACK_ORIGINS
            .iter()
            .copied()
            .chain(extra_origins.iter().map(String::as_str))
        {
            let rule = parse_origin_entry(entry).ok_or_else(|| {
                format!(
                    "--allowed-origin `{entry}` is not an origin; write scheme://host, scheme://host:port or \
                     scheme://host:* (any port), e.g. https://app.example.com"
                )
            })?;
            if !origins.contains(&rule) {
                origins.push(rule);
            }
        }
        Ok(Self {
            hosts: hosts.into(),
            origins: origins.into(),
        })
    }

    /// Checks one request's Host (or HTTP/2 `:authority`) and Origin.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Rejection> {
        let authority = match headers.get(header::HOST) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|s| Authority::try_from(s).ok())
                .ok_or(Rejection::BadHost)?,
            None => uri.authority().cloned().ok_or(Rejection::BadHost)?,
        };
        let host = normalize(authority.host());
        let port = authority.port_u16();
        if !self
            .hosts
            .iter()
            .any(|r| r.host == host && r.port.is_none_or(|p| Some(p) == port))
        {
            return Err(Rejection::ForeignHost);
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .ok()
            .and_then(parse_origin)
            .ok_or(Rejection::ForeignOrigin)?;
        if self.origins.iter().any(|rule| rule.matches(&origin)) {
            Ok(())
        } else {
            Err(Rejection::ForeignOrigin)
        }
    }

    /// True when no host beyond the loopback names is allowed.
    pub fn only_loopback_hosts(&self) -> bool {
        self.hosts.len() <= LOOPBACK_HOSTS.len()
    }

    /// The host list in rmcp's `allowed_hosts` syntax (the same semantics).
    pub fn rmcp_hosts(&self) -> Vec<String> {
        self.hosts.iter().map(HostRule::render).collect()
    }

    /// The origin list in rmcp's `allowed_origins` syntax, ports always explicit so that
    /// rmcp's "no port = any port" reading never applies.
    pub fn rmcp_origins(&self) -> Vec<String> {
        self.origins.iter().map(OriginRule::render).collect()
    }
}

impl fmt::Debug for HostOriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostOriginPolicy")
            .field("hosts", &self.rmcp_hosts())
            .field("origins", &self.rmcp_origins())
            .finish()
    }
}

/// axum middleware: rejects requests that fail [`HostOriginPolicy::check`].
pub async fn enforce(
    State(policy): State<HostOriginPolicy>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(rejection) => {
            // The offending value is attacker-chosen: log that it happened, not what it was.
            tracing::warn!(
                path = request.uri().path(),
                ?rejection,
                "request refused by the Host/Origin check"
            );
            rejection.into_response()
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Rejection::BadHost => (
                StatusCode::BAD_REQUEST,
                "Bad Request: missing or invalid Host header",
            ),
            Rejection::ForeignHost => (
                StatusCode::FORBIDDEN,
                "Forbidden: Host header is not allowed (the server operator can add it with --allowed-host)",
            ),
            Rejection::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                "Forbidden: Origin header is not allowed (the server operator can add it with --allowed-origin)",
            ),
        };
        (status, text).into_response()
    }
}

impl HostRule {
    fn render(&self) -> String {
        let host = bracket(&self.host);
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

impl OriginRule {
    fn matches(&self, origin: &Origin) -> bool {
        match (self, origin) {
            (OriginRule::Null, Origin::Null) => true,
            (
                OriginRule::Tuple { scheme, host, port },
                Origin::Tuple {
                    scheme: o_scheme,
                    host: o_host,
                    port: o_port,
                },
            ) => {
                scheme == o_scheme
                    && host == o_host
                    && match port {
                        PortRule::Any => true,
                        PortRule::Exact(p) => *o_port == Some(*p),
                    }
            }
            _ => false,
        }
    }

    fn render(&self) -> String {
        match self {
            OriginRule::Null => "null".into(),
            OriginRule::Tuple { scheme, host, port } => {
                let host = bracket(host);
                match port {
                    PortRule::Any => format!("{scheme}://{host}:*"),
                    PortRule::Exact(p) => format!("{scheme}://{host}:{p}"),
                }
            }
        }
    }
}

/// A request's Origin; `port` is the explicit port or the scheme's default.
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

fn parse_host_entry(entry: &str) -> Option<HostRule> {
    let entry = entry.trim();
    if entry.is_empty() || entry.contains('/') {
        return None;
    }
    if let Ok(authority) = Authority::try_from(entry) {
        if authority.as_str().contains('@') {
            return None;
        }
        return Some(HostRule {
            host: normalize(authority.host()),
            port: authority.port_u16(),
        });
    }
    // A bare IPv6 address such as `::1` is not an authority; take it as a host.
    entry.parse::<std::net::Ipv6Addr>().ok().map(|ip| HostRule {
        host: ip.to_string(),
        port: None,
    })
}

/// `scheme://host[:port]` with nothing after the authority (a trailing `/` is tolerated).
fn split_origin(value: &str) -> Option<(String, String, Option<u16>)> {
    let uri = Uri::try_from(value).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some()
    {
        return None;
    }
    Some((scheme, normalize(authority.host()), authority.port_u16()))
}

fn parse_origin(value: &str) -> Option<Origin> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let (scheme, host, port) = split_origin(value)?;
    let port = port.or_else(|| default_port(&scheme));
    Some(Origin::Tuple { scheme, host, port })
}

fn parse_origin_entry(entry: &str) -> Option<OriginRule> {
    let entry = entry.trim();
    if entry.eq_ignore_ascii_case("null") {
        return Some(OriginRule::Null);
    }
    if let Some(base) = entry.strip_suffix(":*") {
        let (scheme, host, None) = split_origin(base)? else {
            return None;
        };
        return Some(OriginRule::Tuple {
            scheme,
            host,
            port: PortRule::Any,
        });
    }
    let (scheme, host, port) = split_origin(entry)?;
    let port = port.or_else(|| default_port(&scheme))?;
    Some(OriginRule::Tuple {
        scheme,
        host,
        port: PortRule::Exact(port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn policy(hosts: &[&str], origins: &[&str]) -> HostOriginPolicy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        HostOriginPolicy::new(&s(hosts), &s(origins)).unwrap()
    }

    fn check(
        p: &HostOriginPolicy,
        host: Option<&str>,
        origin: Option<&str>,
    ) -> Result<(), Rejection> {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        if let Some(o) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        p.check(&Uri::from_static("/mcp"), &headers)
    }

    #[test]
    fn loopback_hosts_pass_on_any_port_and_others_do_not() {
        let p = policy(&[], &[]);
        for host in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:1",
            "[::1]:8000",
            "LOCALHOST:9",
        ] {
            assert_eq!(check(&p, Some(host), None), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8000",
            "127.0.0.2:8000",
            "localhost.evil.example",
            "0.0.0.0:8000",
        ] {
            assert_eq!(
                check(&p, Some(host), None),
                Err(Rejection::ForeignHost),
                "{host}"
            );
        }
        assert_eq!(check(&p, None, None), Err(Rejection::BadHost));
        assert_eq!(check(&p, Some("a b"), None), Err(Rejection::BadHost));
    }

    #[test]
    fn extra_hosts_with_and_without_port() {
        let p = policy(&["mcp.example.com", "10.0.0.5:8000", "::2"], &[]);
        assert_eq!(check(&p, Some("mcp.example.com:443"), None), Ok(()));
        assert_eq!(check(&p, Some("MCP.example.com"), None), Ok(()));
        assert_eq!(check(&p, Some("10.0.0.5:8000"), None), Ok(()));
        assert_eq!(
            check(&p, Some("10.0.0.5:8001"), None),
            Err(Rejection::ForeignHost)
        );
        assert_eq!(check(&p, Some("[::2]:1"), None), Ok(()));
        assert!(HostOriginPolicy::new(&["http://x/".into()], &[]).is_err());
    }

    #[test]
    fn origins_are_checked_only_when_present() {
        let p = policy(
            &[],
            &["https://app.example.com", "http://tool.example:*", "null"],
        );
        let ok = |o: &str| check(&p, Some("localhost:8000"), Some(o));
        assert_eq!(check(&p, Some("localhost"), None), Ok(()));
        for origin in [
            "http://localhost:6274",
            "http://127.0.0.1:8000",
            "http://[::1]:3000",
            "https://localhost",
            "https://app.example.com",
            "https://app.example.com:443",
            "http://tool.example:1234",
            "null",
        ] {
            assert_eq!(ok(origin), Ok(()), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://tool.example",
            "http://localhost.evil.example:8000",
            "garbage",
            "http://user@localhost:1",
        ] {
            assert_eq!(ok(origin), Err(Rejection::ForeignOrigin), "{origin}");
        }
    }

    #[test]
    fn bad_origin_entries_are_refused_at_start_up() {
        for entry in [
            "app.example.com",
            "https://app.example.com/path",
            "https://x:1:*",
            "ftp://",
        ] {
            let e = HostOriginPolicy::new(&[], &[entry.to_string()])
                .err()
                .unwrap_or_default();
            assert!(e.contains("--allowed-origin"), "{entry}: {e}");
        }
    }

    #[test]
    fn rmcp_lists_use_explicit_ports() {
        let p = policy(&["mcp.example.com:8443"], &["https://app.example.com"]);
        assert_eq!(
            p.rmcp_hosts(),
            ["localhost", "127.0.0.1", "[::1]", "mcp.example.com:8443"]
        );
        let origins = p.rmcp_origins();
        assert!(
            origins.contains(&"http://[::1]:*".to_string()),
            "{origins:?}"
        );
        assert!(
            origins.contains(&"https://app.example.com:443".to_string()),
            "{origins:?}"
        );
    }
}
