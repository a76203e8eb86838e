//! Bounds one source cannot fill for everyone: registrations per source address, and
//! sign-ins started (`/authorize`) per source address and per client, in memory per
//! process. Beyond them: 429 with `Retry-After` (a JSON OAuth error on `/register`, a
//! page on `/authorize`).
//!
//! The source is the TCP peer, or, only when that peer is one of `--trusted-proxy`
//! (`MCP_TRUSTED_PROXIES`), the client address its proxy names in `X-Forwarded-For`
//! (else `Forwarded`). IPv6 sources count by /64, the block one subscriber gets.
//! The peer comes from the request extension `ConnectInfo<SocketAddr>`, which the serve
//! loop (`transport::conn`) inserts; without it, every request counts as one unknown
//! source.
//!
//! The limiter is hand-written (a GCRA per key, ~60 lines) rather than `governor`'s
//! keyed limiter because that map grows with every new key until someone calls
//! `retain_recent`; here the map has a hard cap ([`MAX_KEYS`]), and what happens when
//! it is full is chosen per limiter: sources fail closed (a flood of fresh addresses
//! gets "busy"), clients fail open (the per-source bound still holds).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::documents::{FETCH_MARK, is_document_id};
use super::{SignIn, page};

/// How many requests a key may make: `burst` at once, then one per `every`.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Requests allowed back to back.
    pub burst: u32,
    /// One more allowed after each such interval.
    pub every: Duration,
}

/// Registrations per source: a person adds the server to a client once; an office
/// behind one address adds it a few dozen times on its first day.
pub const REGISTER_PER_SOURCE: Quota = Quota {
    burst: 20,
    every: Duration::from_secs(30),
};
/// Sign-ins started per source: at most 60 + 120 pending (they live 10 minutes), so
/// filling a pool of 10,000 takes some 55 addresses (or /64 blocks).
pub const PENDING_PER_SOURCE: Quota = Quota {
    burst: 60,
    every: Duration::from_secs(5),
};
/// Sign-ins started per client: about 2,200 in 10 minutes, so one client (every
/// Claude Code user shares one document id) never holds a 10,000 pool alone, while a
/// whole company signing in at nine stays well inside it.
pub const PENDING_PER_CLIENT: Quota = Quota {
    burst: 1000,
    every: Duration::from_millis(500),
};
/// Keys each limiter remembers at most (each costs a few dozen bytes).
pub const MAX_KEYS: usize = 10_000;

/// The per-source and per-client limiters of one process.
pub struct Limits {
    trusted: TrustedProxies,
    register: Keyed<IpAddr>,
    pending_source: Keyed<IpAddr>,
    pending_client: Keyed<String>,
}

impl Limits {
    /// The limiters, trusting forwarded addresses from `trusted` only.
    pub fn new(trusted: TrustedProxies) -> Limits {
        Limits {
            trusted,
            register: Keyed::new(REGISTER_PER_SOURCE, WhenFull::Refuse),
            pending_source: Keyed::new(PENDING_PER_SOURCE, WhenFull::Refuse),
            pending_client: Keyed::new(PENDING_PER_CLIENT, WhenFull::Admit),
        }
    }

    /// The source a request counts against.
    pub fn source(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        source_key(client_address(peer, headers, &self.trusted))
    }

    /// Admits one registration from `source`, or says how long to wait.
    pub fn admit_register(&self, source: IpAddr) -> Result<(), Duration> {
        self.register.admit(source, Instant::now())
    }

    /// Admits one sign-in started by `client_id` from `source`, or says how long to wait.
    /// The source is charged first, so one source cannot use up a client's share.
    pub fn admit_pending(&self, client_id: &str, source: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        self.pending_source.admit(source, now)?;
        let key: String = client_id.chars().take(300).collect();
        self.pending_client.admit(key, now)
    }
}

/// `route_layer` of `POST /register`: the per-source registration bound.
pub async fn register_gate(State(sign_in): State<SignIn>, req: Request, next: Next) -> Response {
    let limits = &sign_in.inner.limits;
    let source = limits.source(peer(&req), req.headers());
    match limits.admit_register(source) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::warn!(source = %source, "too many registrations from one source");
            with_retry_after(
                super::token::oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    &format!(
                        "too many registrations from your address; try again in {} seconds",
                        seconds(wait)
                    ),
                ),
                wait,
            )
        }
    }
}

/// `route_layer` of `/authorize`: a request from a document fetch never fetches, and the
/// per-source and per-client bounds on sign-ins started.
pub async fn authorize_gate(State(sign_in): State<SignIn>, req: Request, next: Next) -> Response {
    let client_id = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned())
    });
    let client_id = client_id.unwrap_or_default();
    if req.headers().contains_key(FETCH_MARK) && is_document_id(&client_id) {
        let why = sign_in.inner.clients.refuse_nested(&client_id);
        return page::error(StatusCode::BAD_REQUEST, "Unknown client", &why.to_string());
    }
    let limits = &sign_in.inner.limits;
    let source = limits.source(peer(&req), req.headers());
    match limits.admit_pending(&client_id, source) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::warn!(source = %source, client = ?client_id, "too many sign-ins started");
            with_retry_after(
                page::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many sign-ins",
                    &format!(
                        "Too many sign-ins were started from your network, or with this client, in a short \
                         time. Try again in {} seconds.",
                        seconds(wait)
                    ),
                ),
                wait,
            )
        }
    }
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

fn seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds(wait)));
    response
}

/// What the limiter does with a new key when it remembers [`MAX_KEYS`] busy ones.
#[derive(Debug, Clone, Copy)]
enum WhenFull {
    Refuse,
    Admit,
}

/// A GCRA limiter per key: each key's "theoretical arrival time"; a key whose time has
/// passed is as good as absent, so it is what a full map sheds.
struct Keyed<K> {
    quota: Quota,
    when_full: WhenFull,
    max_keys: usize,
    map: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> Keyed<K> {
    fn new(quota: Quota, when_full: WhenFull) -> Self {
        Keyed {
            quota,
            when_full,
            max_keys: MAX_KEYS,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn admit(&self, key: K, now: Instant) -> Result<(), Duration> {
        let every = self.quota.every;
        let tolerance = every * self.quota.burst.saturating_sub(1);
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let tat = map.get(&key).map_or(now, |t| (*t).max(now));
        if tat > now + tolerance {
            return Err(tat - now - tolerance);
        }
        if !map.contains_key(&key) && map.len() >= self.max_keys {
            map.retain(|_, t| *t > now);
            if map.len() >= self.max_keys {
                return match self.when_full {
                    WhenFull::Refuse => Err(every),
                    WhenFull::Admit => Ok(()),
                };
            }
        }
        map.insert(key, tat + every);
        Ok(())
    }
}

/// `--trusted-proxy`: the reverse proxies whose forwarded client address is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `IP` or `IP/LEN` entries; errors name the bad one.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bad = || {
                format!(
                    "--trusted-proxy (MCP_TRUSTED_PROXIES) `{entry}` is not an IP address or \
                     network (e.g. 10.0.0.7 or 10.0.0.0/24)"
                )
            };
            let (ip, len) = match entry.split_once('/') {
                Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| bad())?)),
                None => (entry, None),
            };
            let ip = canonical(ip.parse::<IpAddr>().map_err(|_| bad())?);
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            if len > max {
                return Err(bad());
            }
            nets.push((ip, len));
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix(u32::from(*n).into(), u32::from(a).into(), *len, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(*n), u128::from(a), *len, 128),
            _ => false,
        })
    }
}

fn prefix(net: u128, addr: u128, len: u8, bits: u8) -> bool {
    if len == 0 {
        return true;
    }
    let shift = u32::from(bits - len);
    (net >> shift) == (addr >> shift)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the peer, or, behind a trusted proxy, the nearest forwarded
/// address that is not itself a trusted proxy (the right-most: entries further left
/// were written by the client and prove nothing).
fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> IpAddr {
    let Some(peer) = peer.map(|p| canonical(p.ip())) else {
        return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    };
    if !trusted.contains(peer) {
        return peer;
    }
    let mut hops: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(node)
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        k.trim().eq_ignore_ascii_case("for").then_some(v)
                    })
                    .and_then(node)
            })
            .collect();
    }
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if trusted.contains(ip) => continue,
            Some(ip) => return canonical(ip),
            None => break,
        }
    }
    peer
}

/// One forwarded node: `ip`, `ip:port`, `[v6]`, `[v6]:port`, optionally quoted.
fn node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let (host, _port) = s.rsplit_once(':')?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The key a source counts under: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_key_gets_its_burst_then_one_per_interval() {
        let k = Keyed::new(
            Quota {
                burst: 3,
                every: Duration::from_secs(10),
            },
            WhenFull::Refuse,
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(k.admit("a", t0).is_ok());
        }
        assert_eq!(k.admit("a", t0), Err(Duration::from_secs(10)));
        assert!(k.admit("b", t0).is_ok(), "another key has its own budget");
        assert!(k.admit("a", t0 + Duration::from_secs(10)).is_ok());
        assert!(k.admit("a", t0 + Duration::from_secs(10)).is_err());
        assert!(k.admit("a", t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn the_key_map_is_bounded() {
        let quota = Quota {
            burst: 2,
            every: Duration::from_secs(10),
        };
        let mut closed = Keyed::new(quota, WhenFull::Refuse);
        closed.max_keys = 100;
        let mut open = Keyed::new(quota, WhenFull::Admit);
        open.max_keys = 100;
        let t0 = Instant::now();
        for n in 0..1000u32 {
            let _ = closed.admit(n, t0);
            let _ = open.admit(n, t0);
        }
        assert_eq!(closed.map.lock().unwrap().len(), 100);
        assert_eq!(open.map.lock().unwrap().len(), 100);
        assert!(closed.admit(5000, t0).is_err());
        assert!(open.admit(5000, t0).is_ok());
        // Once the busy keys' time has passed, new keys fit again.
        assert!(closed.admit(5001, t0 + Duration::from_secs(11)).is_ok());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let xff = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.5, 10.9.9.9")]);
        assert_eq!(
            client_address(Some(proxy), &xff, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_address(Some(stranger), &xff, &trusted),
            ip("198.51.100.7")
        );
        let none = TrustedProxies::default();
        assert_eq!(client_address(Some(proxy), &xff, &none), ip("10.1.2.3"));
        let two = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.6:443"),
        ]);
        assert_eq!(
            client_address(Some(proxy), &two, &trusted),
            ip("203.0.113.6")
        );
        let fwd = headers(&[(
            "forwarded",
            "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https",
        )]);
        assert_eq!(
            client_address(Some(proxy), &fwd, &trusted),
            ip("2001:db8:cafe::17")
        );
        let junk = headers(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(client_address(Some(proxy), &junk, &trusted), ip("10.1.2.3"));
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:1".parse().unwrap();
        assert_eq!(
            client_address(Some(mapped), &xff, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_address(None, &xff, &trusted),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        assert_eq!(
            source_key(ip("2001:db8:1:2:aaaa::1")),
            source_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:2::1")),
            source_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(source_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn trusted_proxy_entries_are_checked() {
        assert!(TrustedProxies::parse(&["10.0.0.1".into(), " ::1 ".into()]).is_ok());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_source_cannot_use_up_a_clients_share() {
        let limits = Limits::new(TrustedProxies::default());
        let a = ip("203.0.113.1");
        for _ in 0..PENDING_PER_SOURCE.burst {
            assert!(limits.admit_pending("c", a).is_ok());
        }
        assert!(limits.admit_pending("c", a).is_err());
        assert!(limits.admit_pending("c", ip("203.0.113.2")).is_ok());
    }
}
