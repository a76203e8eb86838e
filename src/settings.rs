//! Plain, validated settings, built once from the command line ([`crate::cli`]).
//!
//! Each part keeps its own outcome, because the commands differ in what they need:
//! `serve` stops at the first error, `doctor` reports every part, `print-config` needs
//! only the tool selection. Error texts name the variables to set, never a value.
//! Over 400 lines: about half is the unit tests of these rules.

use std::time::Duration;

use std::sync::Arc;

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use crate::bitrix::grant::App;
use crate::bitrix::{ClientOptions, Endpoint, Rate, StaticToken};
use crate::cli::{
    Cli, HttpArgs, LimitsArgs, Plan, PortalArgs, Secret, SignInArgs, ToolArgs, Transport,
};
use crate::identity::{OAuthConfig, default_token_file};
use crate::server::ToolSelection;
use crate::store::RedisUrl;
use crate::transport::host_origin::HostOriginPolicy;
use crate::transport::http::{DRAIN_TIMEOUT, HttpOptions, MAX_BODY_BYTES};

/// Everything the server runs with.
#[derive(Debug)]
pub struct Settings {
    /// Where portal calls go, and with which credentials.
    pub portal: Result<Portal, String>,
    /// How portal calls are paced and how long one may wait.
    pub pacing: Result<Pacing, String>,
    /// Which tools to offer (resolved by `server::inventory`).
    pub tools: ToolSelection,
    /// `None` for stdio; the HTTP transport's options otherwise.
    pub http: Result<Option<HttpOptions>, String>,
    /// `None` unless `--oauth`: people sign in with their own Bitrix24 accounts.
    pub sign_in: Result<Option<SignInSettings>, String>,
    /// The Redis server shared by replicas (`--store redis://…`), when given.
    pub shared: Result<Option<RedisUrl>, String>,
    /// `--store-key`, when given: seals what replicas share, with or without `--oauth`.
    pub store_key: Option<SecretString>,
    /// `--metrics-listen`: where `/metrics` is served; `None` (the default): no metrics.
    pub metrics_listen: Result<Option<SocketAddr>, String>,
    /// `--audit-log`: where the audit trail goes; `None`: no trail.
    pub audit: Option<crate::audit::Target>,
}

impl Settings {
    /// Validates every part of `cli`. Registers the HTTP bearer token for redaction.
    pub fn from_cli(cli: &Cli) -> Settings {
        let signing_in = cli.sign_in.enabled;
        let call_budget = Duration::from_secs(cli.portal.limits.call_budget);
        Settings {
            portal: if signing_in {
                sign_in_portal(&cli.portal)
            } else {
                portal(&cli.portal)
            },
            pacing: pacing(&cli.portal.limits),
            tools: selection(&cli.tools),
            http: http(&cli.http, signing_in)
                .map(|h| stateless_with_redis(h, cli.sign_in.store.as_deref()))
                .and_then(|h| budget_fits_sessions(h, call_budget)),
            sign_in: sign_in(cli),
            // A key file that cannot be used stops a Redis server (its replicas seal with
            // the key even without --oauth); with --oauth, `sign_in` says so.
            shared: shared(cli).and_then(|s| match (&s, store_key(&cli.sign_in)) {
                (Some(_), Err(e)) => Err(e),
                _ => Ok(s),
            }),
            store_key: store_key(&cli.sign_in).ok().flatten(),
            metrics_listen: metrics_listen(cli),
            audit: cli
                .audit_log
                .as_deref()
                .and_then(crate::audit::Target::parse),
        }
    }
}

/// `--metrics-listen`, which may not be the MCP port: the metrics stay off the address
/// clients reach.
fn metrics_listen(cli: &Cli) -> Result<Option<SocketAddr>, String> {
    let Some(metrics) = cli.metrics.metrics_listen else {
        return Ok(None);
    };
    let mcp = cli.http.listen;
    let same_port = metrics.port() != 0 && metrics.port() == mcp.port();
    let same_ip =
        metrics.ip() == mcp.ip() || metrics.ip().is_unspecified() || mcp.ip().is_unspecified();
    if cli.http.transport == Transport::Http && same_port && same_ip {
        return Err(format!(
            "--metrics-listen {metrics} is the MCP address (--listen {mcp}): metrics are served on a \
             listener of their own; pick another port"
        ));
    }
    Ok(Some(metrics))
}

/// `--store redis://…`: the Redis server replicas share, also in webhook mode (the
/// pacing bucket lives there).
fn shared(cli: &Cli) -> Result<Option<RedisUrl>, String> {
    match cli.sign_in.store.as_deref() {
        Some(s) if is_redis(Some(s)) => RedisUrl::parse(s).map(Some),
        _ => Ok(None),
    }
}

/// A session must outlive the longest call, or a slow call loses its session on `/mcp`
/// (rmcp counts only messages as activity).
fn budget_fits_sessions(
    http: Option<HttpOptions>,
    call_budget: Duration,
) -> Result<Option<HttpOptions>, String> {
    match &http {
        Some(h) if !h.stateless && h.sessions.idle_timeout < call_budget => Err(format!(
            "--session-idle-timeout ({} s, MCP_SESSION_IDLE_TIMEOUT) must be at least --call-budget \
             ({} s, BITRIX24_CALL_BUDGET): a call that waits its whole budget would lose its session",
            h.sessions.idle_timeout.as_secs(),
            call_budget.as_secs()
        )),
        _ => Ok(http),
    }
}

/// With a Redis store the replicas share everything but MCP sessions, so the HTTP server
/// runs stateless: a load balancer may send any request to any replica. Legacy SSE keeps
/// its in-memory sessions and needs sticky sessions.
fn stateless_with_redis(http: Option<HttpOptions>, store: Option<&str>) -> Option<HttpOptions> {
    match http {
        Some(mut h) if is_redis(store) => {
            let by_default = !h.stateless;
            h.stateless = true;
            tracing::info!(
                by_default,
                "Redis store: the HTTP server runs stateless (no Mcp-Session-Id), so any replica \
                 may answer any request; legacy SSE (/sse) keeps its sessions in one replica's \
                 memory and needs sticky sessions at the load balancer"
            );
            Some(h)
        }
        other => other,
    }
}

/// Sign-in, validated.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// `--public-url`; `None` on loopback means the address listened on.
    pub public_url: Option<reqwest::Url>,
    /// The Bitrix24 application; `None` on the sandbox, which makes its own.
    pub app: Option<App>,
    /// `--oauth-url`, the OAuth server override.
    pub oauth_url: Option<reqwest::Url>,
    /// Life of the access tokens this server issues.
    pub token_lifetime: Duration,
    /// `--consent-max-age`: how long a browser's approval of a client is remembered.
    pub consent_max_age: Duration,
    /// Where sign-ins are kept.
    pub store: StoreLocation,
    /// `--store-key`, or the key read from `--store-key-file`, when given.
    pub store_key: Option<SecretString>,
    /// `--refresh-grace`.
    pub refresh_grace: Duration,
    /// `--client-metadata-documents`: whether clients may name themselves by a document.
    pub client_documents: bool,
    /// `--trusted-proxy`: whose forwarded client address the per-source limits believe.
    pub trusted_proxies: crate::sign_in::limits::TrustedProxies,
}

/// `--store-key`, or the key in `--store-key-file` (refused unless private to this user);
/// `None` when neither is given.
pub fn store_key(args: &SignInArgs) -> Result<Option<SecretString>, String> {
    let file = args
        .store_key_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty());
    match (secret(&args.store_key), file) {
        (Some(_), Some(_)) => Err(
            "give the store key once: --store-key (MCP_STORE_KEY) or --store-key-file \
             (MCP_STORE_KEY_FILE), not both"
                .into(),
        ),
        (Some(key), None) => Ok(Some(key)),
        (None, Some(path)) => crate::store::read_key_file(path)
            .map(Some)
            .map_err(|e| e.to_string()),
        (None, None) => Ok(None),
    }
}

/// Where the sign-in store lives.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreLocation {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A Redis server shared by several replicas (`redis://` or `rediss://`).
    Redis(RedisUrl),
}

/// `--store` names a Redis server: the state is shared by replicas behind one address.
fn is_redis(store: Option<&str>) -> bool {
    store.is_some_and(|s| {
        let s = s.trim_start().to_ascii_lowercase();
        s.starts_with("redis://") || s.starts_with("rediss://")
    })
}

/// The sign-in part; `Ok(None)` without `--oauth`.
pub fn sign_in(cli: &Cli) -> Result<Option<SignInSettings>, String> {
    let args = &cli.sign_in;
    if !args.enabled {
        return Ok(None);
    }
    if cli.http.transport == Transport::Stdio {
        return Err(
            "--oauth (MCP_OAUTH) signs people in to the HTTP server: add --transport http \
             (over stdio the server runs as one configured identity)"
                .into(),
        );
    }
    if secret(&cli.http.auth_token).is_some() {
        return Err(
            "--oauth and --auth-token (MCP_AUTH_TOKEN) both guard the HTTP server; keep one: with \
             --oauth each person signs in and gets their own token"
                .into(),
        );
    }
    let public_url = match nonempty(args.public_url.as_deref()) {
        Some(u) => Some(public_url(&u)?),
        None if cli.http.listen.ip().is_loopback() => None,
        None => {
            return Err(format!(
                "--oauth on {} needs --public-url (MCP_PUBLIC_URL): the https address clients reach, \
                 e.g. https://mcp.example.com",
                cli.http.listen
            ));
        }
    };
    let o = &cli.portal.oauth;
    let app = if cli.portal.sandbox {
        None
    } else {
        match (nonempty(o.client_id.as_deref()), secret(&o.client_secret)) {
            (Some(client_id), Some(client_secret)) => Some(App {
                client_id,
                client_secret,
            }),
            _ => {
                return Err("--oauth needs the Bitrix24 application people sign in through: set \
                     BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET (a local server-side application on the \
                     portal, with scopes task and im)"
                    .into());
            }
        }
    };
    Ok(Some(SignInSettings {
        public_url,
        app,
        oauth_url: oauth_url(o.oauth_url.as_deref())?,
        token_lifetime: Duration::from_secs(args.token_lifetime),
        consent_max_age: Duration::from_secs(args.consent_max_age),
        store: store_location(args)?,
        store_key: store_key(args)?,
        refresh_grace: Duration::from_secs(args.refresh_grace),
        client_documents: args.client_metadata_documents,
        trusted_proxies: crate::sign_in::limits::TrustedProxies::parse(&args.trusted_proxies)?,
    }))
}

fn public_url(u: &str) -> Result<reqwest::Url, String> {
    let shape = || {
        format!(
            "MCP_PUBLIC_URL `{u}` is not a base address like https://mcp.example.com (https; http only on \
             localhost; no path, query or fragment)"
        )
    };
    let url = reqwest::Url::parse(u).map_err(|_| shape())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(shape()),
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(shape());
    }
    Ok(url)
}

/// `--store`, for the server and for `users`.
pub fn store_location(args: &SignInArgs) -> Result<StoreLocation, String> {
    match nonempty(args.store.as_deref()) {
        None => crate::store::default_path()
            .map(StoreLocation::Sqlite)
            .ok_or_else(|| {
                "no data directory is known (HOME and XDG_DATA_HOME are unset): set MCP_STORE=sqlite:PATH"
                    .to_string()
            }),
        Some(s) if is_redis(Some(&s)) => RedisUrl::parse(&s).map(StoreLocation::Redis),
        Some(s) => {
            let path = s
                .strip_prefix("sqlite://")
                .or_else(|| s.strip_prefix("sqlite:"))
                .ok_or_else(|| {
                    // The value is not repeated when it may be a mistyped Redis address
                    // with its password.
                    if s.contains('@') {
                        "MCP_STORE is not a store this server knows; use sqlite:PATH or \
                         redis://HOST:PORT/DB"
                            .to_string()
                    } else {
                        format!(
                            "MCP_STORE `{s}` is not a store this server knows; use sqlite:PATH \
                             or redis://HOST:PORT/DB"
                        )
                    }
                })?;
            if path.is_empty() {
                return Err("MCP_STORE=sqlite: needs a path, e.g. sqlite:/var/lib/bitrix24-mcp/store.sqlite3".into());
            }
            Ok(StoreLocation::Sqlite(PathBuf::from(path)))
        }
    }
}

fn oauth_url(u: Option<&str>) -> Result<Option<reqwest::Url>, String> {
    match nonempty(u) {
        None => Ok(None),
        Some(u) => reqwest::Url::parse(&u)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.has_host())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "BITRIX24_OAUTH_URL `{u}` is not an http(s) URL, e.g. https://oauth.bitrix.info"
                )
            }),
    }
}

/// The portal when people sign in: `--portal-url` (or the sandbox), no configured
/// identity: every call runs as the person who signed in.
pub fn sign_in_portal(args: &PortalArgs) -> Result<Portal, String> {
    let identity = secret(&args.webhook_url).is_some()
        || secret(&args.access_token).is_some()
        || secret(&args.oauth.refresh_token).is_some();
    if identity {
        return Err(
            "with --oauth every call runs as the person who signed in, so BITRIX24_WEBHOOK_URL, \
             BITRIX24_ACCESS_TOKEN and BITRIX24_REFRESH_TOKEN do not apply: unset them"
                .into(),
        );
    }
    let choice = match (args.sandbox, nonempty(args.portal_url.as_deref())) {
        (true, Some(_)) => {
            return Err("--sandbox was given but BITRIX24_PORTAL_URL is set too; keep one".into());
        }
        (true, None) => PortalChoice::Sandbox,
        // Requests without a signed-in person never reach the portal client, so the
        // default caller is an empty token that no portal accepts.
        (false, Some(portal)) => Endpoint::oauth_with(&portal, Arc::new(StaticToken::new("")))
            .map(PortalChoice::Portal)
            .map_err(|e| e.0)?,
        (false, None) => {
            return Err(
                "--oauth needs the portal people sign in to: set BITRIX24_PORTAL_URL \
                 (e.g. https://example.bitrix24.com), or add --sandbox to try it"
                    .into(),
            );
        }
    };
    Ok(Portal {
        choice,
        refresh: None,
        request_timeout: Duration::from_secs(args.timeout),
        run_limit: Duration::from_secs(args.portal_run_limit),
    })
}

/// The portal part.
#[derive(Debug, Clone)]
pub struct Portal {
    /// A real portal or the sandbox.
    pub choice: PortalChoice,
    /// OAuth refresh, when configured (OAuth portals only).
    pub refresh: Option<OAuthConfig>,
    /// Whole-request timeout of one portal call.
    pub request_timeout: Duration,
    /// How long the portal may go on running a request it received.
    pub run_limit: Duration,
}

/// Where calls go once the configuration is resolved.
#[derive(Clone, Debug)]
pub enum PortalChoice {
    /// A real portal.
    Portal(Endpoint),
    /// The built-in sandbox.
    Sandbox,
}

/// Client-side pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// The plan named by `--plan`.
    pub plan: Plan,
    /// The bucket paced by; [`Rate::UNLIMITED`] with `--plan unlimited`.
    pub rate: Rate,
    /// Whether `--rate` or `--burst` changed the plan's bucket.
    pub overridden: bool,
    /// How long one call may wait in all.
    pub call_budget: Duration,
}

impl Pacing {
    /// The portal client's options for these settings.
    pub fn client_options(&self, portal: &Portal) -> ClientOptions {
        ClientOptions {
            request_timeout: portal.request_timeout,
            run_limit: portal.run_limit,
            rate: self.rate,
            call_budget: self.call_budget,
            ..ClientOptions::default()
        }
    }
}

/// The names a user can set, for error messages.
const HOW: &str = "set BITRIX24_WEBHOOK_URL (https://PORTAL/rest/USER_ID/SECRET/), or BITRIX24_PORTAL_URL and \
BITRIX24_ACCESS_TOKEN for OAuth; or start with --sandbox to try the server on the built-in sandbox portal";

fn nonempty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The trimmed secret, still wrapped; `None` when unset or blank.
fn secret(v: &Option<Secret>) -> Option<Secret> {
    nonempty(v.as_ref().map(ExposeSecret::expose_secret)).map(Secret::from)
}

/// Resolves the portal and its OAuth refresh; the error names the variables to set.
pub fn portal(args: &PortalArgs) -> Result<Portal, String> {
    let choice = choice(args)?;
    Ok(Portal {
        refresh: oauth_refresh(args)?,
        choice,
        request_timeout: Duration::from_secs(args.timeout),
        run_limit: Duration::from_secs(args.portal_run_limit),
    })
}

fn refresh_configured(args: &PortalArgs) -> bool {
    nonempty(args.oauth.client_id.as_deref()).is_some()
        && secret(&args.oauth.client_secret).is_some()
}

fn choice(args: &PortalArgs) -> Result<PortalChoice, String> {
    let webhook = secret(&args.webhook_url);
    let portal = nonempty(args.portal_url.as_deref());
    let token = secret(&args.access_token);
    let configured = webhook.is_some() || portal.is_some() || token.is_some();
    if args.sandbox {
        if configured {
            return Err("--sandbox was given but a portal is configured too (BITRIX24_WEBHOOK_URL, \
                 BITRIX24_PORTAL_URL or BITRIX24_ACCESS_TOKEN); the sandbox never stands in for a configured \
                 portal: drop --sandbox to use the portal, or unset those variables to use the sandbox"
                .into());
        }
        return Ok(PortalChoice::Sandbox);
    }
    match (webhook, portal, token) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
            "both BITRIX24_WEBHOOK_URL and OAuth settings (BITRIX24_PORTAL_URL/BITRIX24_ACCESS_TOKEN) are set; keep one".into(),
        ),
        // Exposed to be parsed; the endpoint wraps the secret again at once.
        (Some(url), None, None) => Endpoint::webhook(url.expose_secret()).map(PortalChoice::Portal).map_err(|e| e.0),
        (None, Some(portal), Some(token)) => Endpoint::oauth(&portal, token.expose_secret())
            .map(PortalChoice::Portal)
            .map_err(|e| e.0),
        // The refresher that supplies the token is attached by `app::portal_client`.
        (None, Some(portal), None) if refresh_configured(args) => Endpoint::oauth_with(&portal, Arc::new(StaticToken::new("")))
            .map(PortalChoice::Portal)
            .map_err(|e| e.0),
        (None, Some(_), None) => Err("BITRIX24_PORTAL_URL is set but BITRIX24_ACCESS_TOKEN is not; OAuth needs both \
            (or BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN to obtain one)".into()),
        (None, None, Some(_)) => Err("BITRIX24_ACCESS_TOKEN is set but BITRIX24_PORTAL_URL is not; OAuth needs both".into()),
        (None, None, None) => Err(format!("no Bitrix24 portal configured: {HOW}")),
    }
}

/// The OAuth refresh settings, when any is given; checked against the portal mode.
fn oauth_refresh(args: &PortalArgs) -> Result<Option<OAuthConfig>, String> {
    let o = &args.oauth;
    let (id, secret_, refresh) = (
        nonempty(o.client_id.as_deref()),
        secret(&o.client_secret),
        secret(&o.refresh_token),
    );
    if id.is_none() && secret_.is_none() && refresh.is_none() {
        return Ok(None);
    }
    if args.sandbox || secret(&args.webhook_url).is_some() {
        return Err("BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN refresh an OAuth \
             access token; they do not apply to a webhook or the sandbox: unset them, or use BITRIX24_PORTAL_URL"
            .into());
    }
    let (Some(client_id), Some(client_secret)) = (id, secret_) else {
        return Err(
            "OAuth refresh needs both BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET \
             (from the application's settings in Bitrix24)"
                .into(),
        );
    };
    let token_file = match &o.token_file {
        Some(p) if !p.as_os_str().is_empty() => p.clone(),
        _ => default_token_file().ok_or(
            "no configuration directory is known (HOME and XDG_CONFIG_HOME are unset): set BITRIX24_TOKEN_FILE",
        )?,
    };
    let oauth_url = oauth_url(o.oauth_url.as_deref())?;
    Ok(Some(OAuthConfig {
        client_id,
        client_secret,
        refresh_token: refresh,
        access_token: secret(&args.access_token),
        token_file,
        oauth_url,
        shared: None,
    }))
}

/// The plan's bucket with the overrides applied; `--plan unlimited` takes none.
pub fn pacing(limits: &LimitsArgs) -> Result<Pacing, String> {
    let overridden = limits.rate.is_some() || limits.burst.is_some();
    let plan = match limits.plan {
        Plan::Standard => Rate::STANDARD,
        Plan::Enterprise => Rate::ENTERPRISE,
        Plan::Unlimited if overridden => {
            return Err("--plan unlimited turns pacing off, so --rate and --burst (BITRIX24_RATE, BITRIX24_BURST) \
                 do not apply: unset them, or pick --plan standard or enterprise"
                .into());
        }
        Plan::Unlimited => Rate::UNLIMITED,
    };
    Ok(Pacing {
        plan: limits.plan,
        rate: Rate {
            per_sec: limits.rate.unwrap_or(plan.per_sec),
            burst: limits.burst.unwrap_or(plan.burst),
        },
        overridden,
        call_budget: Duration::from_secs(limits.call_budget),
    })
}

/// The tool selection to resolve.
pub fn selection(args: &ToolArgs) -> ToolSelection {
    ToolSelection {
        read_only: args.read_only,
        tools: args.tools.clone(),
        exclude: args.exclude_tools.clone(),
    }
}

/// `None` for stdio; for HTTP the validated options. Registers the token for
/// redaction. Refuses a non-loopback address without a token or sign-in.
pub fn http(args: &HttpArgs, signing_in: bool) -> Result<Option<HttpOptions>, String> {
    if args.transport == Transport::Stdio {
        return Ok(None);
    }
    let token = secret(&args.auth_token);
    if let Some(token) = &token {
        crate::redact::register(token.expose_secret());
    }
    if token.is_none() && !signing_in && !args.listen.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {} without a token: anyone who can reach that address could act on \
             your Bitrix24 portal. Set MCP_AUTH_TOKEN (or --auth-token) to a long random value, e.g. \
             `openssl rand -hex 32`, and give it to your clients; or listen on 127.0.0.1",
            args.listen
        ));
    }
    let clean = |v: &[String]| {
        v.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    };
    let policy = HostOriginPolicy::new(&clean(&args.allowed_hosts), &clean(&args.allowed_origins))?;
    Ok(Some(HttpOptions {
        listen: args.listen,
        stateless: args.stateless,
        auth_token: token,
        policy,
        max_body_bytes: MAX_BODY_BYTES,
        drain_timeout: DRAIN_TIMEOUT,
        drain_period: Duration::from_secs(args.drain_seconds),
        sessions: crate::transport::sessions::SessionLimits {
            max_sessions: args.max_sessions as usize,
            idle_timeout: Duration::from_secs(args.session_idle_timeout),
        },
        connections: crate::transport::conn::ConnLimits {
            header_timeout: Duration::from_secs(args.http_header_timeout),
            max_connections: args
                .max_connections
                .map_or_else(crate::transport::conn::default_max_connections, |n| {
                    n as usize
                }),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OAuthArgs;
    use std::path::PathBuf;

    fn args(
        webhook: Option<&str>,
        portal: Option<&str>,
        token: Option<&str>,
        sandbox: bool,
    ) -> PortalArgs {
        PortalArgs {
            webhook_url: webhook.map(Secret::from),
            portal_url: portal.map(Into::into),
            access_token: token.map(Secret::from),
            sandbox,
            timeout: 65,
            portal_run_limit: 60,
            limits: LimitsArgs::default(),
            oauth: OAuthArgs::default(),
        }
    }

    fn resolve(a: &PortalArgs) -> Result<PortalChoice, String> {
        portal(a).map(|p| p.choice)
    }

    #[test]
    fn nothing_configured_names_the_variables_and_sandbox() {
        let e = resolve(&args(None, None, None, false)).err().unwrap();
        for needle in [
            "BITRIX24_WEBHOOK_URL",
            "BITRIX24_PORTAL_URL",
            "BITRIX24_ACCESS_TOKEN",
            "--sandbox",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        // Empty values count as unset.
        assert!(resolve(&args(Some(" "), Some(""), None, false)).is_err());
    }

    #[test]
    fn sandbox_never_replaces_a_configured_portal() {
        assert!(matches!(
            resolve(&args(None, None, None, true)),
            Ok(PortalChoice::Sandbox)
        ));
        let e = resolve(&args(
            Some("https://p.example/rest/1/abcdefgh/"),
            None,
            None,
            true,
        ))
        .err()
        .unwrap();
        assert!(e.contains("--sandbox") && !e.contains("abcdefgh"), "{e}");
    }

    #[test]
    fn webhook_and_oauth_modes() {
        let hook = Some("https://p.example/rest/1/abcdefgh/");
        assert!(matches!(
            resolve(&args(hook, None, None, false)),
            Ok(PortalChoice::Portal(_))
        ));
        assert!(matches!(
            resolve(&args(
                None,
                Some("https://p.example"),
                Some("token-value"),
                false
            )),
            Ok(PortalChoice::Portal(_))
        ));
        assert!(resolve(&args(None, Some("https://p.example"), None, false)).is_err());
        assert!(resolve(&args(None, None, Some("token-value"), false)).is_err());
        assert!(resolve(&args(hook, None, Some("t"), false)).is_err());
    }

    #[test]
    fn debug_output_hides_portal_secrets() {
        let a = args(
            Some("https://p.example/rest/1/zzwebhooksecretzz/"),
            None,
            Some("zzaccesstokenzz"),
            false,
        );
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("zzwebhooksecretzz") && !shown.contains("zzaccesstokenzz"),
            "{shown}"
        );
    }

    #[test]
    fn plan_sets_the_bucket_and_flags_override_it() {
        let mut l = LimitsArgs::default();
        assert_eq!(pacing(&l).unwrap().rate, Rate::STANDARD);
        l.plan = Plan::Enterprise;
        assert_eq!(pacing(&l).unwrap().rate, Rate::ENTERPRISE);
        l.rate = Some(200.0);
        assert_eq!(
            pacing(&l).unwrap().rate,
            Rate {
                per_sec: 200.0,
                burst: 250
            }
        );
        l.burst = Some(10);
        assert_eq!(pacing(&l).unwrap().rate.burst, 10);
        assert!(pacing(&l).unwrap().overridden);
    }

    #[test]
    fn unlimited_takes_no_overrides() {
        let mut l = LimitsArgs {
            plan: Plan::Unlimited,
            ..LimitsArgs::default()
        };
        assert!(pacing(&l).unwrap().rate.is_unlimited());
        l.burst = Some(10);
        assert!(pacing(&l).unwrap_err().contains("BITRIX24_BURST"));
    }

    #[test]
    fn oauth_refresh_lets_the_access_token_be_absent() {
        let mut a = args(None, Some("https://p.example"), None, false);
        assert!(resolve(&a).is_err());
        assert!(matches!(oauth_refresh(&a), Ok(None)));
        a.oauth = OAuthArgs {
            client_id: Some("app".into()),
            client_secret: Some(Secret::from("secret-value")),
            refresh_token: Some(Secret::from("refresh-value")),
            token_file: Some("/tmp/x/token.json".into()),
            oauth_url: Some("http://127.0.0.1:9".into()),
        };
        assert!(matches!(resolve(&a), Ok(PortalChoice::Portal(_))));
        let c = oauth_refresh(&a).unwrap().unwrap();
        assert_eq!(c.token_file, PathBuf::from("/tmp/x/token.json"));
        assert!(c.access_token.is_none());
        assert!(!format!("{:?} {:?}", a.oauth, c).contains("secret-value"));
        a.oauth.oauth_url = Some("not a url".into());
        assert!(
            oauth_refresh(&a)
                .unwrap_err()
                .contains("BITRIX24_OAUTH_URL")
        );
    }

    fn http_args(listen: &str, token: Option<&str>) -> HttpArgs {
        HttpArgs {
            transport: Transport::Http,
            listen: listen.parse().unwrap(),
            stateless: false,
            auth_token: token.map(Secret::from),
            allowed_hosts: vec![],
            allowed_origins: vec![],
            max_sessions: 1000,
            session_idle_timeout: 1800,
            http_header_timeout: 30,
            max_connections: None,
            drain_seconds: 5,
        }
    }

    #[test]
    fn non_loopback_listen_needs_a_token() {
        for addr in ["0.0.0.0:8000", "[::]:8000", "192.0.2.1:8000"] {
            let e = http(&http_args(addr, None), false).err().unwrap();
            assert!(e.contains("MCP_AUTH_TOKEN") && e.contains(addr), "{e}");
            assert!(
                http(&http_args(addr, Some("  ")), false).is_err(),
                "blank token is no token"
            );
            assert!(
                http(&http_args(addr, Some("a-long-random-token-value")), false)
                    .unwrap()
                    .is_some()
            );
        }
        for addr in ["127.0.0.1:0", "[::1]:8000"] {
            assert!(
                http(&http_args(addr, None), false).unwrap().is_some(),
                "{addr}"
            );
        }
    }

    #[test]
    fn stdio_needs_no_http_settings() {
        let mut a = http_args("0.0.0.0:1", None);
        a.transport = Transport::Stdio;
        assert!(http(&a, false).unwrap().is_none());
    }

    #[test]
    fn metrics_stay_off_the_mcp_address() {
        let metrics = |args: &[&str]| {
            let mut all = vec!["x"];
            all.extend_from_slice(args);
            let (cli, _) = Cli::try_parse_given(all).unwrap();
            Settings::from_cli(&cli).metrics_listen
        };
        assert_eq!(metrics(&[]), Ok(None));
        assert_eq!(
            metrics(&["--metrics-listen", "127.0.0.1:9464"]),
            Ok(Some("127.0.0.1:9464".parse().unwrap()))
        );
        // Over stdio there is no MCP port to clash with.
        assert!(
            metrics(&[
                "--listen",
                "127.0.0.1:9464",
                "--metrics-listen",
                "127.0.0.1:9464"
            ])
            .is_ok()
        );
        let http = ["--transport", "http", "--listen", "127.0.0.1:9464"];
        for clash in ["127.0.0.1:9464", "0.0.0.0:9464"] {
            let mut args = http.to_vec();
            args.extend(["--metrics-listen", clash]);
            let e = metrics(&args).unwrap_err();
            assert!(e.contains("--metrics-listen"), "{e}");
        }
        let mut args = http.to_vec();
        args.extend(["--metrics-listen", "127.0.0.1:9465"]);
        assert!(metrics(&args).is_ok());
        // Port 0 picks a free port, never the MCP one.
        let mut args = http.to_vec();
        args.extend(["--metrics-listen", "127.0.0.1:0"]);
        assert!(metrics(&args).is_ok());
    }

    #[test]
    fn http_args_from_the_command_line() {
        let (cli, _) = Cli::try_parse_given([
            "x",
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:0",
            "--allowed-host",
            "a.example,b.example",
            "--allowed-host",
            "c.example:8443",
            "--allowed-origin",
            "https://app.example",
            "--auth-token",
            "debug-must-hide-this",
        ])
        .unwrap();
        assert_eq!(cli.http.transport, Transport::Http);
        assert_eq!(
            cli.http.allowed_hosts,
            ["a.example", "b.example", "c.example:8443"]
        );
        assert!(!format!("{cli:?}").contains("debug-must-hide-this"));
        let settings = Settings::from_cli(&cli);
        let opts = settings.http.as_ref().unwrap().as_ref().unwrap();
        assert!(!format!("{opts:?} {settings:?}").contains("debug-must-hide-this"));
        let (cli, _) = Cli::try_parse_given([
            "x",
            "--transport",
            "http",
            "--allowed-origin",
            "app.example",
        ])
        .unwrap();
        assert!(Settings::from_cli(&cli).http.is_err());
    }

    #[test]
    fn a_session_outlives_the_longest_call() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["x", "--sandbox", "--transport", "http"];
            argv.extend_from_slice(args);
            Settings::from_cli(&crate::cli::Cli::try_parse_given(argv).unwrap().0)
        };
        let short = parse(&["--session-idle-timeout", "10", "--call-budget", "30"]);
        let e = short.http.unwrap_err();
        assert!(
            e.contains("--session-idle-timeout") && e.contains("--call-budget"),
            "{e}"
        );
        assert!(
            parse(&["--session-idle-timeout", "30", "--call-budget", "30"])
                .http
                .is_ok()
        );
        let stateless = parse(&[
            "--stateless",
            "--session-idle-timeout",
            "10",
            "--call-budget",
            "30",
        ]);
        assert!(stateless.http.is_ok());
    }

    #[test]
    fn sign_in_rules() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend_from_slice(args);
            Settings::from_cli(&crate::cli::Cli::try_parse_given(argv).unwrap().0)
        };
        assert!(
            parse(&["--sandbox", "--oauth"])
                .sign_in
                .unwrap_err()
                .contains("--transport http")
        );
        let off_loopback = parse(&[
            "--sandbox",
            "--oauth",
            "--transport",
            "http",
            "--listen",
            "0.0.0.0:8000",
        ]);
        assert!(off_loopback.sign_in.unwrap_err().contains("--public-url"));
        assert!(
            off_loopback.http.is_ok(),
            "sign-in guards a non-loopback address without --auth-token"
        );
        let both = parse(&[
            "--sandbox",
            "--oauth",
            "--transport",
            "http",
            "--auth-token",
            "tok-0123456789abcdef",
        ]);
        assert!(both.sign_in.is_err());
        let plain = parse(&[
            "--sandbox",
            "--oauth",
            "--transport",
            "http",
            "--public-url",
            "http://mcp.example.com",
        ]);
        assert!(plain.sign_in.unwrap_err().contains("https"));
        let real = parse(&[
            "--oauth",
            "--transport",
            "http",
            "--portal-url",
            "https://p.example",
            "--client-id",
            "app",
            "--client-secret",
            "very-secret-value-1",
            "--store-key",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ]);
        let s = real.sign_in.unwrap().unwrap();
        assert_eq!(s.app.as_ref().unwrap().client_id, "app");
        let shown = format!("{s:?} {:?}", real.portal);
        assert!(
            !shown.contains("very-secret-value-1") && !shown.contains("00112233445566778899"),
            "{shown}"
        );
        let webhook_too = parse(&[
            "--oauth",
            "--transport",
            "http",
            "--portal-url",
            "https://p.example",
            "--client-id",
            "app",
            "--client-secret",
            "s",
            "--access-token",
            "t",
        ]);
        assert!(
            webhook_too
                .portal
                .unwrap_err()
                .contains("every call runs as the person")
        );
    }
    #[test]
    fn a_redis_store_is_parsed_and_makes_the_server_stateless() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["x", "--transport", "http", "--sandbox", "--oauth"];
            argv.extend_from_slice(args);
            Settings::from_cli(&crate::cli::Cli::try_parse_given(argv).unwrap().0)
        };
        let redis = parse(&["--store", "redis://:pa55-w0rd-x@127.0.0.1:6390/2"]);
        let s = redis.sign_in.unwrap().unwrap();
        let StoreLocation::Redis(url) = &s.store else {
            panic!("a Redis store: {:?}", s.store);
        };
        assert_eq!(url.shown(), "redis://127.0.0.1:6390/2");
        assert!(!format!("{s:?}").contains("pa55-w0rd-x"));
        assert!(redis.http.unwrap().unwrap().stateless);
        let tls = parse(&["--store", "rediss://redis.example.com:6380/0"]);
        assert!(matches!(
            tls.sign_in.unwrap().unwrap().store,
            StoreLocation::Redis(_)
        ));
        // Explicitly stateless stays so; SQLite keeps sessions by default.
        assert!(
            parse(&["--store", "redis://127.0.0.1/0", "--stateless"])
                .http
                .unwrap()
                .unwrap()
                .stateless
        );
        let sqlite = parse(&["--store", "sqlite:/tmp/x.sqlite3"]);
        assert!(!sqlite.http.unwrap().unwrap().stateless);
        // Sessions are off, so a short idle timeout is no longer refused.
        let short = parse(&[
            "--store",
            "redis://127.0.0.1/0",
            "--session-idle-timeout",
            "10",
            "--call-budget",
            "30",
        ]);
        assert!(short.http.is_ok());
        for bad in [
            "redis://:pa55-w0rd-x@127.0.0.1:6390/db",
            "redis:///0",
            "redis:/:pa55-w0rd-x@127.0.0.1",
        ] {
            let e = parse(&["--store", bad]).sign_in.unwrap_err();
            assert!(!e.contains("pa55-w0rd-x"), "{e}");
            assert!(e.contains("MCP_STORE"), "{e}");
        }
    }
}
