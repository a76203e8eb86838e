//! Host allow-list and Origin validation (DNS-rebinding and cross-site defence): the one
//! rule set for `/mcp`, `/sse` and `/message`, judged by rmcp everywhere.
//!
//! rmcp checks Host and Origin on `/mcp` itself ([`HostOriginPolicy::configure`]); the
//! legacy SSE routes are ours, so [`enforce`] asks the same rmcp check about their
//! requests (see [`RmcpCheck`]). What stays ours is reading the operator's entries: rmcp
//! skips an entry it cannot parse and reads an origin without a port as "any port",
//! so entries are validated at start-up and handed on with explicit ports.
//!
//! Rules (the MCP transport specification's, and rmcp's semantics):
//! - Host: an entry without a port matches any port; `name:port` only that port; a
//!   missing or malformed Host is a 400, a Host not in the list a 403.
//! - Origin: requests without `Origin` pass (non-browser clients send none); a present
//!   Origin must match an entry by scheme, host and port (`:*` = any port, no port = the
//!   scheme's default port, `null` = the browser's opaque origin), else 403.
//!
//! (Over 400 lines with its unit tests, which pin rmcp's verdicts for the legacy routes.)

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri, header, uri::Authority};
use axum::middleware::Next;
use axum::response::Response;
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
};

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
        /// `None` = any port (`:*`).
        port: Option<u16>,
    },
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

    /// `config` with these allow-lists as rmcp's Host and Origin checks.
    pub fn configure(&self, config: StreamableHttpServerConfig) -> StreamableHttpServerConfig {
        config
            .with_allowed_hosts(self.rmcp_hosts())
            .with_allowed_origins(self.rmcp_origins())
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

/// rmcp's Host/Origin check for routes rmcp does not serve: an rmcp service without
/// sessions that is only ever asked `OPTIONS`. rmcp judges Host and Origin before the
/// method, so it answers a refused request with its own 400/403 and any other with
/// `405`, which here means "passed".
#[derive(Clone)]
pub struct RmcpCheck {
    service: StreamableHttpService<NoServer, NeverSessionManager>,
}

/// Never started: rmcp builds a server only for a request it serves.
#[derive(Clone)]
struct NoServer;

impl ServerHandler for NoServer {}

impl RmcpCheck {
    /// The check `policy` configures on `/mcp`.
    pub fn new(policy: &HostOriginPolicy) -> Self {
        let config = policy
            .configure(StreamableHttpServerConfig::default())
            .with_legacy_session_mode(false);
        Self {
            service: StreamableHttpService::new(
                || Ok(NoServer),
                Arc::new(NeverSessionManager::default()),
                config,
            ),
        }
    }

    /// rmcp's refusal of a request with this URI and headers, or `None` if it passes.
    pub async fn refusal(&self, uri: &Uri, headers: &axum::http::HeaderMap) -> Option<Response> {
        let mut probe = axum::http::Request::builder()
            .method(axum::http::Method::OPTIONS)
            .uri(uri.clone());
        for name in [header::HOST, header::ORIGIN] {
            for value in headers.get_all(&name) {
                probe = probe.header(&name, value);
            }
        }
        let probe = probe.body(Body::empty()).ok()?;
        let answer = self.service.handle(probe).await;
        if answer.status() == StatusCode::METHOD_NOT_ALLOWED {
            return None;
        }
        Some(answer.map(Body::new))
    }
}

/// axum middleware: answers a request rmcp's check refuses as rmcp does on `/mcp`.
pub async fn enforce(State(check): State<RmcpCheck>, request: Request, next: Next) -> Response {
    match check.refusal(request.uri(), request.headers()).await {
        None => next.run(request).await,
        Some(refusal) => {
            // rmcp logs the offending value; we only say which route was asked.
            tracing::warn!(
                path = request.uri().path(),
                status = refusal.status().as_u16(),
                "request refused by the Host/Origin check"
            );
            refusal
        }
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
    fn render(&self) -> String {
        match self {
            OriginRule::Null => "null".into(),
            OriginRule::Tuple { scheme, host, port } => {
                let host = bracket(host);
                match port {
                    None => format!("{scheme}://{host}:*"),
                    Some(p) => format!("{scheme}://{host}:{p}"),
                }
            }
        }
    }
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
            port: None,
        });
    }
    let (scheme, host, port) = split_origin(entry)?;
    let port = port.or_else(|| default_port(&scheme))?;
    Some(OriginRule::Tuple {
        scheme,
        host,
        port: Some(port),
    })
}

#[cfg(test)]
mod tests {
    //! The verdicts below are rmcp's: they pin what an rmcp upgrade must not change.
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn policy(hosts: &[&str], origins: &[&str]) -> HostOriginPolicy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        HostOriginPolicy::new(&s(hosts), &s(origins)).unwrap()
    }

    /// The status rmcp refuses with, or 0 when the request passes.
    async fn check(p: &HostOriginPolicy, host: Option<&str>, origin: Option<&str>) -> u16 {
        let mut headers = HeaderMap::new();
        if let Some(h) = host {
            headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        if let Some(o) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        RmcpCheck::new(p)
            .refusal(&Uri::from_static("/sse"), &headers)
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    #[tokio::test]
    async fn loopback_hosts_pass_on_any_port_and_others_do_not() {
        let p = policy(&[], &[]);
        for host in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:1",
            "[::1]:8000",
            "LOCALHOST:9",
        ] {
            assert_eq!(check(&p, Some(host), None).await, 0, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8000",
            "127.0.0.2:8000",
            "localhost.evil.example",
            "0.0.0.0:8000",
        ] {
            assert_eq!(check(&p, Some(host), None).await, 403, "{host}");
        }
        assert_eq!(check(&p, None, None).await, 400);
        assert_eq!(check(&p, Some("a b"), None).await, 400);
    }

    #[tokio::test]
    async fn extra_hosts_with_and_without_port() {
        let p = policy(&["mcp.example.com", "10.0.0.5:8000", "::2"], &[]);
        assert_eq!(check(&p, Some("mcp.example.com:443"), None).await, 0);
        assert_eq!(check(&p, Some("MCP.example.com"), None).await, 0);
        assert_eq!(check(&p, Some("10.0.0.5:8000"), None).await, 0);
        assert_eq!(check(&p, Some("10.0.0.5:8001"), None).await, 403);
        assert_eq!(check(&p, Some("[::2]:1"), None).await, 0);
        assert!(HostOriginPolicy::new(&["http://x/".into()], &[]).is_err());
    }

    #[tokio::test]
    async fn origins_are_checked_only_when_present() {
        let p = policy(
            &[],
            &["https://app.example.com", "http://tool.example:*", "null"],
        );
        assert_eq!(check(&p, Some("localhost"), None).await, 0);
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
            assert_eq!(
                check(&p, Some("localhost:8000"), Some(origin)).await,
                0,
                "{origin}"
            );
        }
        // (Our own check also refused userinfo in an Origin; rmcp reads past it, and no
        // browser sends one.)
        for origin in [
            "http://evil.example",
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://tool.example",
            "http://localhost.evil.example:8000",
            "garbage",
        ] {
            assert_eq!(
                check(&p, Some("localhost:8000"), Some(origin)).await,
                403,
                "{origin}"
            );
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
