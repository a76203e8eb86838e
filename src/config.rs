//! One configuration from flags and environment (clap), validated once at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bitrix::{
    Caller, Client, ClientOptions, Endpoint, OAuthConfig, Rate, Refresher, StaticToken, oauth,
};
use crate::doctor::DoctorArgs;
use crate::print_config::{ClientKind, DEFAULT_HTTP_URL};
use crate::server::ToolSelection;

/// MCP server for Bitrix24 task results (REST 3.0).
///
/// Give it a portal with BITRIX24_WEBHOOK_URL (or BITRIX24_PORTAL_URL plus
/// BITRIX24_ACCESS_TOKEN), or try it on the built-in sandbox portal with --sandbox.
#[derive(Debug, Parser)]
#[command(name = "bitrix24-task-results-mcp", version, about, long_about)]
pub struct Cli {
    /// What to do; without a subcommand the MCP server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The portal.
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Which tools to offer.
    #[command(flatten)]
    pub tools: ToolArgs,
    /// How MCP clients connect (stdio or HTTP).
    #[command(flatten)]
    pub http: HttpArgs,
    /// Log filter (tracing EnvFilter syntax: error, warn, info, debug, trace). Logs go to stderr.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_level: String,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the MCP server (the default).
    Serve,
    /// Check the configuration and the portal (credentials, scopes, round trip); exit 0 when usable, 1 otherwise.
    Doctor(DoctorArgs),
    /// Print the configuration snippet for an MCP client (binary path and env var names, never a secret).
    PrintConfig(PrintConfigArgs),
}

/// Which tools the server offers (applied by `server::inventory`).
#[derive(Debug, Clone, Args)]
pub struct ToolArgs {
    /// Offer only the read-only tools (task_result_list, task_chat_messages_list); write tools are hidden and refused. Wins over --tools [default: off].
    #[arg(
        long,
        env = "BITRIX24_READ_ONLY",
        global = true,
        action = clap::ArgAction::SetTrue,
        // Empty, 0, false, no, off, n, f mean off; any other value means on, so a typo
        // errs on the safe side.
        value_parser = clap::builder::FalseyValueParser::new(),
    )]
    pub read_only: bool,
    /// Offer only these tools (comma-separated names) [default: every tool].
    #[arg(
        long,
        env = "BITRIX24_TOOLS",
        value_delimiter = ',',
        value_name = "NAMES",
        global = true
    )]
    pub tools: Vec<String>,
    /// Do not offer these tools (comma-separated names) [default: none].
    #[arg(
        long,
        env = "BITRIX24_EXCLUDE_TOOLS",
        value_delimiter = ',',
        value_name = "NAMES",
        global = true
    )]
    pub exclude_tools: Vec<String>,
}

impl ToolArgs {
    /// The selection to resolve.
    pub fn selection(&self) -> ToolSelection {
        ToolSelection {
            read_only: self.read_only,
            tools: self.tools.clone(),
            exclude: self.exclude_tools.clone(),
        }
    }

    /// The same selection as command-line arguments, for client configurations.
    pub fn as_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.read_only {
            args.push("--read-only".to_string());
        }
        if !self.tools.is_empty() {
            args.extend(["--tools".to_string(), self.tools.join(",")]);
        }
        if !self.exclude_tools.is_empty() {
            args.extend(["--exclude-tools".to_string(), self.exclude_tools.join(",")]);
        }
        args
    }
}

/// Options of `print-config`.
#[derive(Debug, Clone, Args)]
pub struct PrintConfigArgs {
    /// The MCP client to configure.
    #[arg(long, value_enum)]
    pub client: ClientKind,
    /// Endpoint of the running HTTP server (with the global --transport http).
    #[arg(long, default_value = DEFAULT_HTTP_URL, value_name = "URL")]
    pub url: String,
    /// Name of the server in the client's configuration (short: Claude Code shows tools as mcp__NAME__TOOL).
    #[arg(long, default_value = "bitrix24")]
    pub name: String,
}

/// Which portal to talk to, and how.
#[derive(Clone, Args)]
pub struct PortalArgs {
    /// Inbound webhook URL, https://PORTAL/rest/USER_ID/SECRET/ (the /rest/api/ form works too). Secret: never logged.
    #[arg(
        long,
        env = "BITRIX24_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL",
        global = true
    )]
    pub webhook_url: Option<String>,
    /// Portal address for OAuth, e.g. https://example.bitrix24.com (with --access-token).
    #[arg(long, env = "BITRIX24_PORTAL_URL", value_name = "URL", global = true)]
    pub portal_url: Option<String>,
    /// OAuth access token, sent in the JSON body's `auth` field. Secret: never logged.
    #[arg(
        long,
        env = "BITRIX24_ACCESS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub access_token: Option<String>,
    /// Use the built-in sandbox portal (an emulator on a loopback port) instead of a real one [default: off].
    #[arg(long, env = "BITRIX24_SANDBOX", global = true)]
    pub sandbox: bool,
    /// Whole-request timeout for portal calls, in seconds (the portal itself stops at 60).
    #[arg(long, env = "BITRIX24_TIMEOUT", default_value_t = 65, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// Pacing and waiting.
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// OAuth token refresh.
    #[command(flatten)]
    pub oauth: OAuthArgs,
}

// Hand-written so that the webhook secret and the access token never end up in a debug print.
impl fmt::Debug for PortalArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| crate::redact::MASK);
        f.debug_struct("PortalArgs")
            .field("webhook_url", &set(&self.webhook_url))
            .field("portal_url", &self.portal_url)
            .field("access_token", &set(&self.access_token))
            .field("sandbox", &self.sandbox)
            .field("timeout", &self.timeout)
            .field("limits", &self.limits)
            .field("oauth", &self.oauth)
            .finish()
    }
}

/// The portal's rate limit, mirrored on this side so calls wait instead of being refused.
#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// The portal's plan, which sets its REST rate limit: standard = 2 requests/s with a burst of 50, enterprise = 5/s with 250.
    #[arg(long, env = "BITRIX24_PLAN", value_enum, default_value_t = Plan::Standard)]
    pub plan: Plan,
    /// Requests per second this server sends at most, once the burst is used (overrides the plan's).
    #[arg(long, env = "BITRIX24_RATE", value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// The portal's burst: requests it accepts at once after a quiet spell (overrides the plan's). This server keeps a few slots of it in reserve (30 ms of the rate plus one).
    #[arg(long, env = "BITRIX24_BURST", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub burst: Option<u32>,
    /// How long one tool call may wait in all, in seconds: for a rate-limit slot, between retries and for an operating-limit reset. Past it, the call ends with an error saying why.
    #[arg(long, env = "BITRIX24_CALL_BUDGET", default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub call_budget: u64,
}

impl Default for LimitsArgs {
    fn default() -> Self {
        LimitsArgs {
            plan: Plan::Standard,
            rate: None,
            burst: None,
            call_budget: 30,
        }
    }
}

/// Bitrix24 plans, as far as REST limits go (contract §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Plan {
    /// Every plan but Enterprise: 2 requests/s, burst 50.
    Standard,
    /// Enterprise: 5 requests/s, burst 250.
    Enterprise,
}

impl LimitsArgs {
    /// The plan's bucket with the overrides applied.
    pub fn rate(&self) -> Rate {
        let plan = match self.plan {
            Plan::Standard => Rate::STANDARD,
            Plan::Enterprise => Rate::ENTERPRISE,
        };
        Rate {
            per_sec: self.rate.unwrap_or(plan.per_sec),
            burst: self.burst.unwrap_or(plan.burst),
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.001..=100_000.0).contains(&rate) {
        return Err("the rate must be between 0.001 and 100000 requests per second".into());
    }
    Ok(rate)
}

/// Refreshing an expired OAuth access token. With the client id, secret and a refresh
/// token the server renews the token itself; BITRIX24_ACCESS_TOKEN may then be left out.
#[derive(Clone, Default, Args)]
pub struct OAuthArgs {
    /// OAuth application's client id (application settings in Bitrix24), to refresh the access token.
    #[arg(long, env = "BITRIX24_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// OAuth application's client secret. Secret: never logged, sent only to the OAuth server.
    #[arg(
        long,
        env = "BITRIX24_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: Option<String>,
    /// OAuth refresh token; each refresh replaces it, and the new one is kept in the token file. Secret: never logged.
    #[arg(
        long,
        env = "BITRIX24_REFRESH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub refresh_token: Option<String>,
    /// Where refreshed tokens are kept (mode 0600) and read at start-up [default: $XDG_CONFIG_HOME or ~/.config, then bitrix24-task-results-mcp/token.json].
    #[arg(long, env = "BITRIX24_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// OAuth server for refreshes [default: the server_endpoint of the last token answer, else https://oauth.bitrix.info].
    #[arg(long, env = "BITRIX24_OAUTH_URL", value_name = "URL")]
    pub oauth_url: Option<String>,
}

// Hand-written so that secrets never end up in a debug print.
impl fmt::Debug for OAuthArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthArgs")
            .field("client_id", &self.client_id)
            .field("token_file", &self.token_file)
            .field("oauth_url", &self.oauth_url)
            .finish_non_exhaustive()
    }
}

/// Where calls go once the configuration is resolved.
#[derive(Clone)]
pub enum PortalChoice {
    /// A real portal.
    Portal(Endpoint),
    /// The built-in sandbox.
    Sandbox,
}

/// The names a user can set, for error messages.
const HOW: &str = "set BITRIX24_WEBHOOK_URL (https://PORTAL/rest/USER_ID/SECRET/), or BITRIX24_PORTAL_URL and \
BITRIX24_ACCESS_TOKEN for OAuth; or start with --sandbox to try the server on the built-in sandbox portal";

impl PortalArgs {
    /// Resolves the portal; the error text names the variables to set and never a secret.
    pub fn resolve(&self) -> Result<PortalChoice, String> {
        let set = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let webhook = set(&self.webhook_url);
        let portal = set(&self.portal_url);
        let token = set(&self.access_token);
        let configured = webhook.is_some() || portal.is_some() || token.is_some();
        if self.sandbox {
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
            (Some(url), None, None) => Endpoint::webhook(&url).map(PortalChoice::Portal).map_err(|e| e.0),
            (None, Some(portal), Some(token)) => Endpoint::oauth(&portal, &token)
                .map(PortalChoice::Portal)
                .map_err(|e| e.0),
            // The refresher that supplies the token is attached by `connect`.
            (None, Some(portal), None) if self.oauth.refresh_configured() => Endpoint::oauth_with(&portal, Arc::new(StaticToken::new("")))
                .map(PortalChoice::Portal)
                .map_err(|e| e.0),
            (None, Some(_), None) => Err("BITRIX24_PORTAL_URL is set but BITRIX24_ACCESS_TOKEN is not; OAuth needs both \
                (or BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN to obtain one)".into()),
            (None, None, Some(_)) => Err("BITRIX24_ACCESS_TOKEN is set but BITRIX24_PORTAL_URL is not; OAuth needs both".into()),
            (None, None, None) => Err(format!("no Bitrix24 portal configured: {HOW}")),
        }
    }

    /// HTTP client options from the flags.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            request_timeout: Duration::from_secs(self.timeout),
            rate: self.limits.rate(),
            call_budget: Duration::from_secs(self.limits.call_budget),
            ..ClientOptions::default()
        }
    }

    /// The OAuth refresh settings, when any is given; checked against the portal mode.
    pub fn oauth_refresh(&self) -> Result<Option<OAuthConfig>, String> {
        let o = &self.oauth;
        let (id, secret, refresh) = (
            nonempty(&o.client_id),
            nonempty(&o.client_secret),
            nonempty(&o.refresh_token),
        );
        if id.is_none() && secret.is_none() && refresh.is_none() {
            return Ok(None);
        }
        if self.sandbox || nonempty(&self.webhook_url).is_some() {
            return Err("BITRIX24_CLIENT_ID, BITRIX24_CLIENT_SECRET and BITRIX24_REFRESH_TOKEN refresh an OAuth \
                 access token; they do not apply to a webhook or the sandbox: unset them, or use BITRIX24_PORTAL_URL"
                .into());
        }
        let (Some(client_id), Some(client_secret)) = (id, secret) else {
            return Err(
                "OAuth refresh needs both BITRIX24_CLIENT_ID and BITRIX24_CLIENT_SECRET \
                 (from the application's settings in Bitrix24)"
                    .into(),
            );
        };
        let token_file = match &o.token_file {
            Some(p) if !p.as_os_str().is_empty() => p.clone(),
            _ => oauth::default_token_file().ok_or(
                "no configuration directory is known (HOME and XDG_CONFIG_HOME are unset): set BITRIX24_TOKEN_FILE",
            )?,
        };
        let oauth_url = match nonempty(&o.oauth_url) {
            None => None,
            Some(u) => Some(
                reqwest::Url::parse(&u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http") && u.has_host())
                    .ok_or_else(|| {
                        format!("BITRIX24_OAUTH_URL `{u}` is not an http(s) URL, e.g. https://oauth.bitrix.info")
                    })?,
            ),
        };
        Ok(Some(OAuthConfig {
            client_id,
            client_secret,
            refresh_token: refresh,
            access_token: nonempty(&self.access_token),
            token_file,
            oauth_url,
        }))
    }

    /// The portal client for `endpoint` (pacing, budget) and the configured caller (with
    /// OAuth refresh settings, the refresher that keeps its token fresh).
    pub fn connect(&self, mut endpoint: Endpoint) -> Result<(Client, Caller), String> {
        let options = self.client_options();
        tracing::info!(
            rate_per_sec = options.rate.per_sec,
            burst = options.rate.burst,
            call_budget_s = options.call_budget.as_secs(),
            "pacing portal calls"
        );
        if let Some(config) = self.oauth_refresh()? {
            let refresher = Refresher::load(config)?;
            tracing::info!(token_file = %refresher.token_file().display(), "OAuth token refresh enabled");
            endpoint.caller = Caller::OAuth(Arc::new(refresher));
        }
        Ok((Client::new(endpoint.portal, options), endpoint.caller))
    }
}

impl OAuthArgs {
    /// Whether the server can obtain an access token itself (a refresh token may also
    /// come from the token file).
    pub fn refresh_configured(&self) -> bool {
        nonempty(&self.client_id).is_some() && nonempty(&self.client_secret).is_some()
    }
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The transport MCP clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// One client on stdin/stdout (the client starts the server).
    Stdio,
    /// Streamable HTTP at /mcp plus legacy HTTP+SSE at /sse, for remote and shared use.
    Http,
}

/// Transport choice and the HTTP transport's settings.
#[derive(Clone, Args)]
pub struct HttpArgs {
    /// How clients connect: stdio (the client starts the server) or http (/mcp, plus /sse for older clients).
    #[arg(long, env = "MCP_TRANSPORT", value_enum, default_value_t = Transport::Stdio, global = true)]
    pub transport: Transport,
    /// Address the HTTP transport listens on, IP:PORT (port 0 picks a free port). Any non-loopback address requires --auth-token.
    #[arg(
        long,
        env = "MCP_LISTEN",
        default_value = "127.0.0.1:8000",
        value_name = "ADDR",
        global = true
    )]
    pub listen: SocketAddr,
    /// Streamable HTTP without sessions: every POST gets a plain JSON reply, no Mcp-Session-Id.
    #[arg(long, env = "MCP_STATELESS", global = true)]
    pub stateless: bool,
    /// Bearer token HTTP clients must send (Authorization: Bearer TOKEN). Secret: never logged.
    #[arg(
        long,
        env = "MCP_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub auth_token: Option<String>,
    /// Host name (or host:port) clients may use besides localhost, 127.0.0.1 and ::1; repeatable (env: comma-separated).
    #[arg(
        long = "allowed-host",
        env = "MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST",
        global = true
    )]
    pub allowed_hosts: Vec<String>,
    /// Browser origin allowed besides loopback pages, e.g. https://app.example.com or http://host:* (any port); repeatable (env: comma-separated).
    #[arg(
        long = "allowed-origin",
        env = "MCP_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGIN",
        global = true
    )]
    pub allowed_origins: Vec<String>,
}

// Hand-written so the token never reaches a log.
impl fmt::Debug for HttpArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpArgs")
            .field("transport", &self.transport)
            .field("listen", &self.listen)
            .field("stateless", &self.stateless)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "***"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

impl HttpArgs {
    /// `None` for stdio; for HTTP the validated options. Registers the token for
    /// redaction. Refuses a non-loopback address without a token.
    pub fn resolve(&self) -> Result<Option<crate::transport::http::HttpOptions>, String> {
        if self.transport == Transport::Stdio {
            return Ok(None);
        }
        let token = self
            .auth_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if let Some(token) = &token {
            crate::redact::register(token);
        }
        if token.is_none() && !self.listen.ip().is_loopback() {
            return Err(format!(
                "refusing to listen on {} without a token: anyone who can reach that address could act on \
                 your Bitrix24 portal. Set MCP_AUTH_TOKEN (or --auth-token) to a long random value, e.g. \
                 `openssl rand -hex 32`, and give it to your clients; or listen on 127.0.0.1",
                self.listen
            ));
        }
        let clean = |v: &[String]| {
            v.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        };
        let policy = crate::transport::host_origin::HostOriginPolicy::new(
            &clean(&self.allowed_hosts),
            &clean(&self.allowed_origins),
        )?;
        Ok(Some(crate::transport::http::HttpOptions {
            listen: self.listen,
            stateless: self.stateless,
            auth_token: token,
            policy,
            max_body_bytes: crate::transport::http::MAX_BODY_BYTES,
            drain_timeout: crate::transport::http::DRAIN_TIMEOUT,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        webhook: Option<&str>,
        portal: Option<&str>,
        token: Option<&str>,
        sandbox: bool,
    ) -> PortalArgs {
        PortalArgs {
            webhook_url: webhook.map(Into::into),
            portal_url: portal.map(Into::into),
            access_token: token.map(Into::into),
            sandbox,
            timeout: 65,
            limits: LimitsArgs::default(),
            oauth: OAuthArgs::default(),
        }
    }

    #[test]
    fn nothing_configured_names_the_variables_and_sandbox() {
        let e = args(None, None, None, false).resolve().err().unwrap();
        for needle in [
            "BITRIX24_WEBHOOK_URL",
            "BITRIX24_PORTAL_URL",
            "BITRIX24_ACCESS_TOKEN",
            "--sandbox",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        // Empty values count as unset.
        assert!(args(Some(" "), Some(""), None, false).resolve().is_err());
    }

    #[test]
    fn sandbox_never_replaces_a_configured_portal() {
        assert!(matches!(
            args(None, None, None, true).resolve(),
            Ok(PortalChoice::Sandbox)
        ));
        let e = args(Some("https://p.example/rest/1/abcdefgh/"), None, None, true)
            .resolve()
            .err()
            .unwrap();
        assert!(e.contains("--sandbox") && !e.contains("abcdefgh"), "{e}");
    }

    #[test]
    fn webhook_and_oauth_modes() {
        assert!(matches!(
            args(
                Some("https://p.example/rest/1/abcdefgh/"),
                None,
                None,
                false
            )
            .resolve(),
            Ok(PortalChoice::Portal(_))
        ));
        assert!(matches!(
            args(None, Some("https://p.example"), Some("token-value"), false).resolve(),
            Ok(PortalChoice::Portal(_))
        ));
        assert!(
            args(None, Some("https://p.example"), None, false)
                .resolve()
                .is_err()
        );
        assert!(
            args(None, None, Some("token-value"), false)
                .resolve()
                .is_err()
        );
        assert!(
            args(
                Some("https://p.example/rest/1/abcdefgh/"),
                None,
                Some("t"),
                false
            )
            .resolve()
            .is_err()
        );
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
        assert_eq!(l.rate(), Rate::STANDARD);
        l.plan = Plan::Enterprise;
        assert_eq!(l.rate(), Rate::ENTERPRISE);
        l.rate = Some(200.0);
        assert_eq!(
            l.rate(),
            Rate {
                per_sec: 200.0,
                burst: 250
            }
        );
        l.burst = Some(10);
        assert_eq!(l.rate().burst, 10);
        assert!(parse_rate("0").is_err() && parse_rate("x").is_err());
        assert_eq!(parse_rate(" 0.5 "), Ok(0.5));
    }

    #[test]
    fn oauth_refresh_lets_the_access_token_be_absent() {
        let mut a = args(None, Some("https://p.example"), None, false);
        assert!(a.resolve().is_err());
        assert!(matches!(a.oauth_refresh(), Ok(None)));
        a.oauth = OAuthArgs {
            client_id: Some("app".into()),
            client_secret: Some("secret-value".into()),
            refresh_token: Some("refresh-value".into()),
            token_file: Some("/tmp/x/token.json".into()),
            oauth_url: Some("http://127.0.0.1:9".into()),
        };
        assert!(matches!(a.resolve(), Ok(PortalChoice::Portal(_))));
        let c = a.oauth_refresh().unwrap().unwrap();
        assert_eq!(c.token_file, PathBuf::from("/tmp/x/token.json"));
        assert_eq!(c.access_token, None);
        assert!(!format!("{:?} {:?}", a.oauth, c).contains("secret-value"));
        a.oauth.oauth_url = Some("not a url".into());
        assert!(
            a.oauth_refresh()
                .unwrap_err()
                .contains("BITRIX24_OAUTH_URL")
        );
    }

    fn http(listen: &str, token: Option<&str>) -> HttpArgs {
        HttpArgs {
            transport: Transport::Http,
            listen: listen.parse().unwrap(),
            stateless: false,
            auth_token: token.map(Into::into),
            allowed_hosts: vec![],
            allowed_origins: vec![],
        }
    }

    #[test]
    fn non_loopback_listen_needs_a_token() {
        for addr in ["0.0.0.0:8000", "[::]:8000", "192.0.2.1:8000"] {
            let e = http(addr, None).resolve().err().unwrap();
            assert!(e.contains("MCP_AUTH_TOKEN") && e.contains(addr), "{e}");
            assert!(
                http(addr, Some("  ")).resolve().is_err(),
                "blank token is no token"
            );
            assert!(
                http(addr, Some("a-long-random-token-value"))
                    .resolve()
                    .unwrap()
                    .is_some()
            );
        }
        for addr in ["127.0.0.1:0", "[::1]:8000"] {
            assert!(http(addr, None).resolve().unwrap().is_some(), "{addr}");
        }
    }

    #[test]
    fn stdio_needs_no_http_settings() {
        let mut a = http("0.0.0.0:1", None);
        a.transport = Transport::Stdio;
        assert!(a.resolve().unwrap().is_none());
    }

    #[test]
    fn http_args_from_the_command_line() {
        let cli = Cli::try_parse_from([
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
        let opts = cli.http.resolve().unwrap().unwrap();
        assert!(!format!("{opts:?}").contains("debug-must-hide-this"));
        assert!(
            Cli::try_parse_from([
                "x",
                "--transport",
                "http",
                "--allowed-origin",
                "app.example"
            ])
            .unwrap()
            .http
            .resolve()
            .is_err()
        );
    }
}
