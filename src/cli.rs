//! The command line: every clap type (flags, environment variables, subcommands and their
//! options) and nothing else. Validation across flags lives in [`crate::settings`]; this
//! module imports no other module of the crate, so every other one may import it.
//!
//! Every portal, pacing, OAuth, tool-selection and transport flag is `global`: it is
//! accepted before or after `serve`, `doctor` and `print-config`.
//!
//! Over 600 lines because it is the whole schema, each flag with its help text, plus
//! the record of where each given setting came from ([`Given`]); split, the flags would scatter.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// Default endpoint of the HTTP transport, as clients reach it.
pub const DEFAULT_HTTP_URL: &str = "http://127.0.0.1:8000/mcp";

/// MCP server for Bitrix24 task results (REST 3.0).
///
/// Give it a portal with BITRIX24_WEBHOOK_URL (or BITRIX24_PORTAL_URL plus
/// BITRIX24_ACCESS_TOKEN), or try it on the built-in sandbox portal with --sandbox. For a
/// team, `--transport http --oauth` lets each person sign in with their own account.
///
/// On/off variables (BITRIX24_SANDBOX, BITRIX24_READ_ONLY, MCP_STATELESS, MCP_OAUTH) take 1, true,
/// yes, on or 0, false, no, off, in any case; empty means off. Every flag may come before
/// or after the subcommand.
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
    /// Sign-in: each person with their own Bitrix24 account (HTTP only).
    #[command(flatten)]
    pub sign_in: SignInArgs,
    /// Metrics for Prometheus (any transport).
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// Log filter: a level (error, warn, info, debug, trace), or `target=level` directives
    /// separated by commas (e.g. `info,rmcp=debug`). Logs go to stderr.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// Audit trail: one JSON line per write tool call and per sign-in event (who, which client, which task and result, the outcome; never a text or a secret), appended to PATH (created 0600, reopened on SIGHUP for logrotate), or `-` for stderr [default: off].
    #[arg(long, env = "MCP_AUDIT_LOG", value_name = "PATH", global = true)]
    pub audit_log: Option<PathBuf>,
    /// How log lines on stderr look: text (one line per event, for people) or json (one JSON object per line, for log collectors); secrets are masked in both.
    #[arg(long, env = "MCP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line: timestamp, level, fields (message included), span.
    Json,
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
    /// Who is signed in to a server started with --oauth, and ending their sign-in (same --store).
    Users(UsersArgs),
}

/// Options of `users`.
#[derive(Debug, Clone, Args)]
pub struct UsersArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: UsersAction,
}

/// `users list` and `users revoke`.
#[derive(Debug, Clone, Subcommand)]
pub enum UsersAction {
    /// List the people signed in: Bitrix24 user id, portal, last use.
    List,
    /// End a person's sign-in at once (also on a running server using the same store).
    Revoke {
        /// The person's Bitrix24 user id, as `users list` shows it.
        user_id: i64,
    },
}

/// Sign-in (`--oauth`): each person signs in with their own Bitrix24 account, through a
/// Bitrix24 application (--portal-url, --client-id, --client-secret).
#[derive(Debug, Clone, Args)]
pub struct SignInArgs {
    /// Make people sign in with their own Bitrix24 account (MCP authorization; HTTP transport only) [default: off].
    #[arg(long = "oauth", env = "MCP_OAUTH", global = true, action = clap::ArgAction::SetTrue, value_parser = parse_bool)]
    pub enabled: bool,
    /// Base address clients reach, e.g. https://mcp.example.com; the callback to register in the Bitrix24 app is <URL>/oauth/callback. Default on loopback: the address listened on.
    #[arg(long, env = "MCP_PUBLIC_URL", value_name = "URL", global = true)]
    pub public_url: Option<String>,
    /// Life of the access tokens this server issues to clients.
    #[arg(long, env = "MCP_TOKEN_LIFETIME", default_value_t = 3600, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub token_lifetime: u64,
    /// How long a browser remembers that its person allowed a client on the consent page (then sign-ins from that client skip the page); 0 asks every time. `users revoke` forgets it too.
    #[arg(long, env = "MCP_CONSENT_MAX_AGE", default_value_t = 30 * 24 * 3600, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(0..=400 * 24 * 3600))]
    pub consent_max_age: u64,
    /// Where sign-ins are kept: sqlite:PATH, or redis://HOST:PORT/DB (rediss:// for TLS) for several replicas, which then also share the pacing bucket and refresh turns [default: sqlite: under the user's data directory].
    #[arg(long, env = "MCP_STORE", value_name = "STORE", global = true)]
    pub store: Option<String>,
    /// Key (64 hex characters) encrypting the Bitrix24 tokens in the store; required with Redis (or --store-key-file); with SQLite, without either a key file is created beside the database. Secret: never logged. Prefer the environment variable or --store-key-file: a flag's value is visible to other local users in /proc/PID/cmdline.
    #[arg(
        long,
        env = "MCP_STORE_KEY",
        hide_env_values = true,
        value_name = "HEX",
        global = true
    )]
    pub store_key: Option<Secret>,
    /// File holding the store key (64 hex characters), instead of --store-key; it must be owned by this user and readable by no one else (chmod 600).
    #[arg(long, env = "MCP_STORE_KEY_FILE", value_name = "PATH", global = true)]
    pub store_key_file: Option<PathBuf>,
    /// Seconds after a refresh token's first use during which a repeat of it (a client retrying a refresh whose answer was lost, two processes sharing one token) gets the same new pair instead of signing the person out; 0: every repeat counts as a stolen token's reuse.
    #[arg(long, env = "MCP_REFRESH_GRACE", default_value_t = 30, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub refresh_grace: u64,
    /// Advertise and accept Client ID Metadata Documents (clients named by an https URL this server fetches). Turn off where the server cannot reach the internet: clients then register through /register.
    #[arg(long, env = "MCP_CLIENT_METADATA_DOCUMENTS", default_value = "on", value_name = "on|off", value_parser = parse_bool, action = clap::ArgAction::Set, global = true)]
    pub client_metadata_documents: bool,
    /// Reverse proxies (IP or IP/LEN, comma-separated) whose X-Forwarded-For or Forwarded header names the client's address for the per-address sign-in limits; from any other peer those headers are ignored [default: none].
    #[arg(
        long = "trusted-proxy",
        env = "MCP_TRUSTED_PROXIES",
        value_name = "IP[/LEN]",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<String>,
}

/// Metrics in the Prometheus text format, on a listener of their own.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsArgs {
    /// Serve metrics in the Prometheus text format at http://ADDR/metrics, on a listener of their own (any transport, stdio too; never the MCP port) [default: off]. Keep ADDR off the public network (e.g. 127.0.0.1:9464, or an address only Prometheus reaches): the numbers describe how your team uses the server.
    #[arg(long, env = "MCP_METRICS_LISTEN", value_name = "ADDR", global = true)]
    pub metrics_listen: Option<SocketAddr>,
}

/// Options of `doctor`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// A task the webhook's user can see: the checks then list its results and read its chat.
    #[arg(long, value_name = "ID")]
    pub task_id: Option<u64>,
}

/// Options of `print-config`.
#[derive(Debug, Clone, Args)]
pub struct PrintConfigArgs {
    /// The MCP client to configure.
    #[arg(long, value_enum)]
    pub client: ClientKind,
    /// How the client starts the server (stdio): the absolute path of this binary, or `npx -y bitrix24-task-results-mcp`.
    #[arg(long, value_enum, default_value_t = Launcher::Path)]
    pub launcher: Launcher,
    /// Endpoint of the running HTTP server (with the global --transport http).
    #[arg(long, default_value = DEFAULT_HTTP_URL, value_name = "URL")]
    pub url: String,
    /// Name of the server in the client's configuration (short: Claude Code shows tools as mcp__NAME__TOOL).
    #[arg(long, default_value = "bitrix24")]
    pub name: String,
}

/// The clients `print-config` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    /// Claude Code (`.mcp.json`, or `claude mcp add`).
    ClaudeCode,
    /// Cursor (`~/.cursor/mcp.json` or `.cursor/mcp.json`).
    Cursor,
    /// OpenAI Codex (`~/.codex/config.toml`).
    Codex,
    /// VS Code / GitHub Copilot (`.vscode/mcp.json`).
    Vscode,
    /// Claude Desktop (`claude_desktop_config.json`).
    ClaudeDesktop,
}

/// How a client starts the server over stdio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Launcher {
    /// The absolute path of this binary.
    Path,
    /// `npx -y bitrix24-task-results-mcp` (the npm package).
    Npx,
}

/// One rule for every on/off flag and variable: 1/true/yes/on and 0/false/no/off, any case;
/// empty means off. Anything else is refused, so a typo never silently picks a mode.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err(format!(
            "`{s}` is not on or off: use 1, true, yes, on or 0, false, no, off (any case; empty means off)"
        )),
    }
}

/// Which tools the server offers (applied by `server::inventory`).
#[derive(Debug, Clone, Args)]
pub struct ToolArgs {
    /// Offer only the read-only tools (task_search, task_get, task_result_list, task_chat_messages_list); write tools are hidden and refused. Wins over --tools [default: off].
    #[arg(long, env = "BITRIX24_READ_ONLY", global = true, action = clap::ArgAction::SetTrue, value_parser = parse_bool)]
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

/// Which portal to talk to, and how. Debug is derived: the secrets are [`Secret`]s.
#[derive(Debug, Clone, Args)]
pub struct PortalArgs {
    /// Inbound webhook URL, https://PORTAL/rest/USER_ID/SECRET/ (the /rest/api/ form works too). Secret: never logged. Prefer the environment variable: a flag's value is visible to other local users in /proc/PID/cmdline.
    #[arg(
        long,
        env = "BITRIX24_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL",
        global = true
    )]
    pub webhook_url: Option<Secret>,
    /// Portal address for OAuth, e.g. https://example.bitrix24.com (with --access-token).
    #[arg(long, env = "BITRIX24_PORTAL_URL", value_name = "URL", global = true)]
    pub portal_url: Option<String>,
    /// OAuth access token, sent in the JSON body's `auth` field. Secret: never logged. Prefer the environment variable: a flag's value is visible to other local users in /proc/PID/cmdline.
    #[arg(
        long,
        env = "BITRIX24_ACCESS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub access_token: Option<Secret>,
    /// Use the built-in sandbox portal (an emulator on a loopback port) instead of a real one [default: off].
    #[arg(long, env = "BITRIX24_SANDBOX", global = true, action = clap::ArgAction::SetTrue, value_parser = parse_bool)]
    pub sandbox: bool,
    /// Whole-request timeout for portal calls, in seconds (the portal itself stops at 60).
    #[arg(long, env = "BITRIX24_TIMEOUT", default_value_t = 65, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub timeout: u64,
    /// How long the portal may go on running a request it received, in seconds (Bitrix24's cloud cuts it at 60; on-premise, the PHP time limit). A REST 3.0 write whose connection broke is repeated, under its Idempotency-Key, only once this much has passed since it was sent: two requests with one key at the same moment may both run.
    #[arg(long, env = "BITRIX24_RUN_LIMIT", default_value_t = 60, value_name = "SECONDS", global = true, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub portal_run_limit: u64,
    /// Pacing and waiting.
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// OAuth token refresh.
    #[command(flatten)]
    pub oauth: OAuthArgs,
}

/// A secret from the command line or the environment: `Debug` shows `[REDACTED]`, and
/// only `expose_secret()` (from [`secrecy::ExposeSecret`]) gives the value. clap builds
/// it through its `From<String>`.
pub type Secret = secrecy::SecretString;

/// The portal's rate limit, mirrored on this side so calls wait instead of being refused.
#[derive(Debug, Clone, Args)]
pub struct LimitsArgs {
    /// The portal's plan, which sets its REST rate limit: standard = 2 requests/s with a burst of 50, enterprise = 5/s with 250, unlimited = no client-side pacing (self-hosted portals with limits off; a 503 is still retried).
    #[arg(long, env = "BITRIX24_PLAN", value_enum, default_value_t = Plan::Standard, global = true)]
    pub plan: Plan,
    /// Requests per second this server sends at most, once the burst is used (overrides the plan's; not with --plan unlimited).
    #[arg(long, env = "BITRIX24_RATE", value_name = "PER_SECOND", value_parser = parse_rate, global = true)]
    pub rate: Option<f64>,
    /// The portal's burst: requests it accepts at once after a quiet spell (overrides the plan's; not with --plan unlimited). This server keeps a few slots of it in reserve (30 ms of the rate plus one).
    #[arg(long, env = "BITRIX24_BURST", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub burst: Option<u32>,
    /// How long one tool call may wait in all, in seconds: for a rate-limit slot, between retries and for an operating-limit reset. Past it, the call ends with an error saying why.
    #[arg(long, env = "BITRIX24_CALL_BUDGET", default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
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

/// Bitrix24 plans, as far as REST limits go (docs/bitrix24-api.md#rate-limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Plan {
    /// Every plan but Enterprise: 2 requests/s, burst 50.
    Standard,
    /// Enterprise: 5 requests/s, burst 250.
    Enterprise,
    /// No REST limits (a self-hosted portal with limits off): calls are not paced.
    Unlimited,
}

/// `--rate`: a number of requests per second within what a portal can mean.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !(0.001..=100_000.0).contains(&rate) {
        return Err("the rate must be between 0.001 and 100000 requests per second (--plan unlimited turns pacing off)".into());
    }
    Ok(rate)
}

/// Refreshing an expired OAuth access token. With the client id, secret and a refresh
/// token the server renews the token itself; BITRIX24_ACCESS_TOKEN may then be left out.
#[derive(Debug, Clone, Default, Args)]
pub struct OAuthArgs {
    /// OAuth application's client id (application settings in Bitrix24), to refresh the access token.
    #[arg(long, env = "BITRIX24_CLIENT_ID", value_name = "ID", global = true)]
    pub client_id: Option<String>,
    /// OAuth application's client secret. Secret: never logged, sent only to the OAuth server. Prefer the environment variable: a flag's value is visible to other local users in /proc/PID/cmdline.
    #[arg(
        long,
        env = "BITRIX24_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        global = true
    )]
    pub client_secret: Option<Secret>,
    /// OAuth refresh token; each refresh replaces it, and the new one is kept in the token file. Secret: never logged. Prefer the environment variable: a flag's value is visible to other local users in /proc/PID/cmdline.
    #[arg(
        long,
        env = "BITRIX24_REFRESH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub refresh_token: Option<Secret>,
    /// Where refreshed tokens are kept (mode 0600) and read at start-up [default: $XDG_CONFIG_HOME or ~/.config, then bitrix24-task-results-mcp/token.json].
    #[arg(long, env = "BITRIX24_TOKEN_FILE", value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,
    /// OAuth server for refreshes [default: the server_endpoint of the last token answer, else https://oauth.bitrix.info].
    #[arg(long, env = "BITRIX24_OAUTH_URL", value_name = "URL", global = true)]
    pub oauth_url: Option<String>,
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
#[derive(Debug, Clone, Args)]
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
    /// Streamable HTTP without sessions: every POST gets a plain JSON reply, no Mcp-Session-Id [default: off].
    #[arg(long, env = "MCP_STATELESS", global = true, action = clap::ArgAction::SetTrue, value_parser = parse_bool)]
    pub stateless: bool,
    /// Bearer token HTTP clients must send (Authorization: Bearer TOKEN). Secret: never logged. Prefer the environment variable: a flag's value is visible to other local users in /proc/PID/cmdline.
    #[arg(
        long,
        env = "MCP_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub auth_token: Option<Secret>,
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
    /// Most HTTP sessions open at once (streamable HTTP and legacy SSE together); a new one past it gets 503.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_sessions: u32,
    /// Seconds without a message after which an HTTP session is closed (its Mcp-Session-Id then gets 404).
    #[arg(long, env = "MCP_SESSION_IDLE_TIMEOUT", default_value_t = 1800, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800), global = true)]
    pub session_idle_timeout: u64,
    /// Seconds a connection may take to send a request's headers; also how long an idle keep-alive connection stays open. Answers being sent (long tool calls, SSE streams) are not affected.
    #[arg(long, env = "MCP_HTTP_HEADER_TIMEOUT", default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub http_header_timeout: u64,
    /// Most client connections open at once; past it new ones wait to be accepted [default: 1000, or fewer under a lower open-files limit (ulimit -n) minus 128].
    #[arg(long, env = "MCP_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_connections: Option<u32>,
    /// Seconds the HTTP server goes on serving after SIGTERM, calls in flight and new ones, while /readyz answers 503, so a load balancer stops sending before it stops; 0 stops at once. Ctrl-C (SIGINT) always stops at once. Ignored over stdio.
    #[arg(long, env = "MCP_DRAIN_SECONDS", default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3600), global = true)]
    pub drain_seconds: u64,
}

/// Where a setting given to this process came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Its environment variable.
    Env,
    /// The command line, as it was written there (e.g. `["--plan", "enterprise"]`).
    Flag(Vec<String>),
    /// The command line, for a secret (`--auth-token`, `--webhook-url`, ...): its value is
    /// not kept, so that `Given` holds (and its `Debug` shows) no secret.
    SecretFlag,
}

/// The settings given explicitly (not defaults), keyed by environment variable name.
#[derive(Debug, Clone, Default)]
pub struct Given {
    by_var: BTreeMap<String, Origin>,
}

impl Given {
    /// Where the setting of `var` came from; `None` when it holds its default.
    pub fn origin(&self, var: &str) -> Option<&Origin> {
        self.by_var.get(var)
    }

    fn from_matches(cmd: &clap::Command, matches: &ArgMatches) -> Given {
        let mut by_var = BTreeMap::new();
        // Globals given after the subcommand are recorded in its matches.
        let sub = matches.subcommand().map(|(_, m)| m);
        for arg in cmd.get_arguments() {
            let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let id = arg.get_id().as_str();
            let source = |m: &ArgMatches| m.try_get_raw(id).ok().flatten().and(m.value_source(id));
            let (m, source) = match (sub.and_then(|s| source(s).map(|v| (s, v))), source(matches)) {
                (Some(found), _) => found,
                (None, Some(v)) => (matches, v),
                (None, None) => continue,
            };
            let origin = match source {
                ValueSource::EnvVariable => Origin::Env,
                ValueSource::CommandLine if arg.is_hide_env_values_set() => Origin::SecretFlag,
                ValueSource::CommandLine => {
                    let mut argv = vec![format!("--{long}")];
                    if arg.get_num_args().is_none_or(|n| n.takes_values())
                        && arg.get_action().takes_values()
                    {
                        let raw: Vec<String> = m
                            .get_raw(id)
                            .into_iter()
                            .flatten()
                            .map(|v| v.to_string_lossy().into_owned())
                            .collect();
                        argv.push(raw.join(","));
                    }
                    Origin::Flag(argv)
                }
                _ => continue,
            };
            by_var.insert(var.to_string_lossy().into_owned(), origin);
        }
        Given { by_var }
    }
}

impl Cli {
    /// Parses the process's arguments and environment (exits on an error, as clap does).
    pub fn parse_given() -> (Cli, Given) {
        match Self::try_parse_given(std::env::args_os()) {
            Ok(parsed) => parsed,
            Err(e) => e.exit(),
        }
    }

    /// Parses `args` (and the environment), recording where each given setting came from.
    pub fn try_parse_given<I, T>(args: I) -> Result<(Cli, Given), clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut cmd = Cli::command();
        let mut matches = cmd.try_get_matches_from_mut(args)?;
        // Where each setting came from is read first: `from_arg_matches_mut` takes the
        // values out, where `from_arg_matches` would first clone every match.
        let given = Given::from_matches(&cmd, &matches);
        let cli = Cli::from_arg_matches_mut(&mut matches)?;
        Ok((cli, given))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bool_words() {
        for s in ["1", "true", "YES", "On", " on "] {
            assert_eq!(parse_bool(s), Ok(true), "{s}");
        }
        for s in ["", "0", "False", "no", "OFF"] {
            assert_eq!(parse_bool(s), Ok(false), "{s}");
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn rate_bounds() {
        assert!(parse_rate("0").is_err() && parse_rate("x").is_err());
        assert_eq!(parse_rate(" 0.5 "), Ok(0.5));
    }

    #[test]
    fn flags_after_the_subcommand_and_their_origin() {
        let (cli, given) = Cli::try_parse_given([
            "x",
            "doctor",
            "--plan",
            "enterprise",
            "--read-only",
            "--tools",
            "a,b",
        ])
        .unwrap();
        assert_eq!(cli.portal.limits.plan, Plan::Enterprise);
        assert!(cli.tools.read_only);
        assert_eq!(
            given.origin("BITRIX24_PLAN"),
            Some(&Origin::Flag(vec!["--plan".into(), "enterprise".into()]))
        );
        assert_eq!(
            given.origin("BITRIX24_READ_ONLY"),
            Some(&Origin::Flag(vec!["--read-only".into()]))
        );
        assert_eq!(
            given.origin("BITRIX24_TOOLS"),
            Some(&Origin::Flag(vec!["--tools".into(), "a,b".into()]))
        );
        assert_eq!(given.origin("BITRIX24_CALL_BUDGET"), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let (cli, given) = Cli::try_parse_given([
            "x",
            "--webhook-url",
            "https://p.example/rest/1/zzwebhooksecretzz/",
            "--access-token",
            "zzaccesstokenzz",
            "--client-secret",
            "zzclientsecretzz",
            "--refresh-token",
            "zzrefreshzz",
            "--auth-token",
            "zzauthzz",
        ])
        .unwrap();
        // Secret flags are recorded without their value.
        assert_eq!(given.origin("MCP_AUTH_TOKEN"), Some(&Origin::SecretFlag));
        let shown = format!("{cli:?} {given:?}");
        for s in [
            "zzwebhooksecretzz",
            "zzaccesstokenzz",
            "zzclientsecretzz",
            "zzrefreshzz",
            "zzauthzz",
        ] {
            assert!(!shown.contains(s), "{shown}");
        }
    }
}
