//! One configuration from flags and environment (clap), validated once at start-up.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bitrix::{ClientOptions, Endpoint};
use crate::doctor::DoctorArgs;
use crate::print_config::{ClientKind, DEFAULT_HTTP_URL, Transport};
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
    /// stdio: the client starts this binary; http: the client connects to a running HTTP server.
    #[arg(long, value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,
    /// Endpoint of the running HTTP server (with --transport http).
    #[arg(long, default_value = DEFAULT_HTTP_URL, value_name = "URL")]
    pub url: String,
    /// Name of the server in the client's configuration (short: Claude Code shows tools as mcp__NAME__TOOL).
    #[arg(long, default_value = "bitrix24")]
    pub name: String,
}

/// Which portal to talk to, and how.
#[derive(Debug, Clone, Args)]
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
}
