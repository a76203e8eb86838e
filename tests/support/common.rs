//! Shared helpers for the end-to-end tests: spawn the release-shaped binary, speak MCP
//! to it with rmcp's client, and point it at an in-process sandbox over real HTTP.
#![allow(dead_code)]

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bitrix24-task-results-mcp");

/// Env vars a test must not inherit from the developer's shell.
pub const PORTAL_VARS: [&str; 25] = [
    "BITRIX24_WEBHOOK_URL",
    "BITRIX24_PORTAL_URL",
    "BITRIX24_ACCESS_TOKEN",
    "BITRIX24_SANDBOX",
    "BITRIX24_CLIENT_ID",
    "BITRIX24_CLIENT_SECRET",
    "BITRIX24_REFRESH_TOKEN",
    "BITRIX24_TOKEN_FILE",
    "BITRIX24_READ_ONLY",
    "BITRIX24_TOOLS",
    "BITRIX24_EXCLUDE_TOOLS",
    "MCP_AUTH_TOKEN",
    "BITRIX24_PLAN",
    "BITRIX24_RATE",
    "BITRIX24_BURST",
    "BITRIX24_CALL_BUDGET",
    "BITRIX24_OAUTH_URL",
    "BITRIX24_TIMEOUT",
    "MCP_OAUTH",
    "MCP_PUBLIC_URL",
    "MCP_TOKEN_LIFETIME",
    "MCP_STORE",
    "MCP_STORE_KEY",
    "MCP_LOG_FORMAT",
    "MCP_METRICS_LISTEN",
];

/// A command for the binary with a clean environment.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for var in PORTAL_VARS {
        cmd.env_remove(var);
    }
    cmd.env_remove("MCP_AUDIT_LOG");
    cmd.env("RUST_LOG", "info");
    // SIGTERM stops at once, as before the drain existed, unless a test asks for a drain
    // (`--drain-seconds`, or this variable in `env`): most tests stop servers that way.
    cmd.env("MCP_DRAIN_SECONDS", "0");
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running MCP client session with the binary, plus what the binary wrote to stderr.
pub struct Session {
    pub client: RunningService<RoleClient, ()>,
    pub stderr: Arc<Mutex<String>>,
}

impl Session {
    /// Calls a tool with JSON arguments.
    pub async fn call(&self, name: &str, args: Value) -> CallToolResult {
        let mut params = CallToolRequestParams::new(name.to_string());
        if let Value::Object(map) = args {
            params = params.with_arguments(map);
        }
        self.client
            .call_tool(params)
            .await
            .unwrap_or_else(|e| panic!("tools/call {name} failed at the protocol level: {e}"))
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Closes stdin and waits for the child to go; fails the test if the server panicked
    /// (its panic hook writes `panic at …` to stderr).
    pub async fn close(self) {
        let captured = self.stderr.clone();
        let _ = self.client.cancel().await;
        let stderr = captured.lock().unwrap().clone();
        assert!(
            !stderr.contains("panic at "),
            "the server panicked:\n{stderr}"
        );
    }
}

/// Spawns the binary over stdio and completes the MCP handshake.
pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Session {
    let cmd = command(args, env).configure(|_| {});
    let (transport, stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server binary");
    let captured = Arc::new(Mutex::new(String::new()));
    if let Some(mut stderr) = stderr {
        let sink = captured.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let client = ().serve(transport).await.expect("MCP handshake with the server");
    Session {
        client,
        stderr: captured,
    }
}

/// Starts an in-process sandbox and spawns the binary against it through its webhook URL,
/// exactly as a user would configure a real portal.
pub async fn spawn_with_sandbox(
    opts: SandboxOptions,
    extra_env: &[(&str, &str)],
) -> (Sandbox, Session) {
    let sandbox = Sandbox::start(opts).await.expect("start sandbox");
    let url = sandbox.webhook_url();
    let mut env: Vec<(&str, &str)> = vec![("BITRIX24_WEBHOOK_URL", url.as_str())];
    env.extend_from_slice(extra_env);
    let session = spawn(&[], &env).await;
    (sandbox, session)
}

/// The structured content of a successful result.
pub fn ok(result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "expected success, got {}",
        text(result)
    );
    let structured = result
        .structured_content
        .clone()
        .expect("structured content");
    let text: Value = serde_json::from_str(&text(result)).expect("text content is JSON");
    assert_eq!(structured, text, "text content must be the same JSON");
    structured
}

/// The text of an error result.
pub fn err(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected isError, got {}",
        text(result)
    );
    text(result)
}

/// All text content joined.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Requests the sandbox received for a REST method (matched on the path's last segment).
pub fn requests_for(
    sandbox: &Sandbox,
    method: &str,
) -> Vec<bitrix24_task_results_mcp::sandbox::RecordedRequest> {
    sandbox
        .requests()
        .into_iter()
        .filter(|r| {
            r.path
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case(method))
        })
        .collect()
}

/// How many times to script `fault` so that one tool call meets it on every attempt the
/// client makes: 5xx answers and dropped connections are retried (a write only after an
/// answer of the portal's own), everything else is final.
/// Scripting exactly that many leaves no fault behind for the next call.
pub fn attempts_to_exhaust(fault: &bitrix24_task_results_mcp::sandbox::Fault, write: bool) -> u32 {
    use bitrix24_task_results_mcp::sandbox::Fault;
    // An answer of the portal's own (a JSON error) says the request has ended; without one
    // a write may still be running and is not repeated within the default call budget.
    let portal_answered = |body: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("error").is_some())
    };
    let retried = match fault {
        Fault::Raw { status, body, .. } => *status >= 500 && (!write || portal_answered(body)),
        Fault::Html | Fault::DropAfterApply => !write,
        Fault::InternalError | Fault::InternalErrorV3 => true,
        _ => false,
    };
    if retried {
        bitrix24_task_results_mcp::bitrix::retry::RetryPolicy::default().transient_retries + 1
    } else {
        1
    }
}

/// A sandbox portal with one OAuth application installed: `client_id` and
/// `client_secret`, installed with `refresh_token`; its access tokens live an hour.
pub async fn oauth_sandbox(client_id: &str, client_secret: &str, refresh_token: &str) -> Sandbox {
    Sandbox::start(SandboxOptions {
        oauth: Some(bitrix24_task_results_mcp::sandbox::OAuthApp {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            access_token_ttl: std::time::Duration::from_secs(3600),
            ..Default::default()
        }),
        ..SandboxOptions::default()
    })
    .await
    .expect("start sandbox")
}

/// The OAuth token file at `path`, as JSON.
pub fn read_token_file(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("token file")).expect("JSON")
}
