//! One configuration from flags and environment (clap), validated once at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bitrix::{ClientOptions, Endpoint};

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
    /// How MCP clients connect (stdio or HTTP).
    #[command(flatten)]
    pub http: HttpArgs,
    /// Log filter (tracing EnvFilter syntax: error, warn, info, debug, trace). Logs go to stderr.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_level: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server (the default).
    Serve,
}

/// Which portal to talk to, and how.
#[derive(Debug, Clone, Args)]
pub struct PortalArgs {
    /// Inbound webhook URL, https://PORTAL/rest/USER_ID/SECRET/ (the /rest/api/ form works too). Secret: never logged.
    #[arg(
        long,
        env = "BITRIX24_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub webhook_url: Option<String>,
    /// Portal address for OAuth, e.g. https://example.bitrix24.com (with --access-token).
    #[arg(long, env = "BITRIX24_PORTAL_URL", value_name = "URL")]
    pub portal_url: Option<String>,
    /// OAuth access token, sent in the JSON body's `auth` field. Secret: never logged.
    #[arg(
        long,
        env = "BITRIX24_ACCESS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub access_token: Option<String>,
    /// Use the built-in sandbox portal (an emulator on a loopback port) instead of a real one.
    #[arg(long, env = "BITRIX24_SANDBOX", global = true)]
    pub sandbox: bool,
    /// Whole-request timeout for portal calls, in seconds (the portal itself stops at 60).
    #[arg(long, env = "BITRIX24_TIMEOUT", default_value_t = 65, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
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
            (None, Some(_), None) => Err("BITRIX24_PORTAL_URL is set but BITRIX24_ACCESS_TOKEN is not; OAuth needs both".into()),
            (None, None, Some(_)) => Err("BITRIX24_ACCESS_TOKEN is set but BITRIX24_PORTAL_URL is not; OAuth needs both".into()),
            (None, None, None) => Err(format!("no Bitrix24 portal configured: {HOW}")),
        }
    }

    /// HTTP client options from the flags.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            request_timeout: Duration::from_secs(self.timeout),
            ..ClientOptions::default()
        }
    }
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
