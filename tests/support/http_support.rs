//! Helpers for the HTTP transport tests: spawn the binary with `--transport http` on a
//! free port (it binds port 0 and logs the address), talk to it with rmcp's streamable
//! HTTP client, with raw reqwest, or with a small legacy HTTP+SSE client.
#![allow(dead_code)]

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use super::common;

/// Env vars of the HTTP side a test must not inherit.
pub const HTTP_VARS: [&str; 20] = [
    "MCP_TRANSPORT",
    "MCP_LISTEN",
    "MCP_STATELESS",
    "MCP_AUTH_TOKEN",
    "MCP_ALLOWED_HOSTS",
    "MCP_ALLOWED_ORIGINS",
    "MCP_MAX_SESSIONS",
    "MCP_SESSION_IDLE_TIMEOUT",
    "MCP_OAUTH",
    "MCP_PUBLIC_URL",
    "MCP_TOKEN_LIFETIME",
    "MCP_STORE",
    "MCP_STORE_KEY",
    "MCP_CLIENT_METADATA_DOCUMENTS",
    "MCP_TRUSTED_PROXIES",
    "MCP_CONSENT_MAX_AGE",
    "MCP_REFRESH_GRACE",
    "MCP_STORE_KEY_FILE",
    "MCP_HTTP_HEADER_TIMEOUT",
    "MCP_MAX_CONNECTIONS",
];

/// A token long enough to be registered for redaction.
pub const TOKEN: &str = "test-token-5f2c9a7e41d8b3";

/// Upper bound on waits that should end quickly; hitting it means a hang, not slowness.
pub const HANG: Duration = Duration::from_secs(60);

/// The binary serving HTTP.
pub struct HttpServer {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = common::command(args, env);
    for var in HTTP_VARS {
        if !env.iter().any(|(k, _)| *k == var) {
            cmd.env_remove(var);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Spawns `--transport http --listen 127.0.0.1:0 ARGS` and waits for its address.
pub async fn spawn_http(args: &[&str], env: &[(&str, &str)]) -> HttpServer {
    spawn_http_on("127.0.0.1:0", args, env).await
}

/// Spawns `--transport http --listen LISTEN ARGS` and waits for its address.
pub async fn spawn_http_on(listen: &str, args: &[&str], env: &[(&str, &str)]) -> HttpServer {
    let mut all = vec!["--transport", "http", "--listen", listen];
    all.extend_from_slice(args);
    let child = command(&all, env).spawn().expect("spawn the server binary");
    HttpServer::listening(child).await
}

impl HttpServer {
    /// `GET /healthz` (no token, no Host check).
    pub async fn healthz(&self) -> reqwest::Result<reqwest::Response> {
        http().get(format!("{}/healthz", self.base)).send().await
    }

    /// Waits for `child`, the binary serving HTTP with its stderr piped, to log its
    /// address; its stderr is kept from then on.
    pub async fn listening(mut child: Child) -> HttpServer {
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on http://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let addr = rest.split("/mcp").next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = match tokio::time::timeout(HANG, rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "the server did not report its address; stderr:\n{}",
                stderr.lock().unwrap()
            ),
        };
        HttpServer {
            child,
            base: format!("http://{addr}"),
            stderr,
        }
    }
}

/// Runs the binary expecting it to refuse to start; returns its exit status and stderr.
pub async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let child = command(args, env).spawn().expect("spawn the server binary");
    let out = tokio::time::timeout(HANG, child.wait_with_output())
        .await
        .expect("the server should have exited")
        .expect("wait for the server");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl HttpServer {
    /// `http://127.0.0.1:PORT/mcp`
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// `127.0.0.1:PORT`
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM, as a container runtime or service manager would.
    pub async fn sigterm(&self) {
        let pid = self.child.id().expect("server still running").to_string();
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        tokio::time::timeout(HANG, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not exit; stderr:\n{}", self.stderr()))
            .expect("wait for the server")
    }

    /// Polls stderr until it contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let found = tokio::time::timeout(HANG, async {
            while !self.stderr().contains(needle) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "no `{needle}` in stderr:\n{}", self.stderr());
    }
}

/// reqwest (ours and rmcp's) is built without a default TLS provider.
fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// rmcp's streamable HTTP client, with a bearer token when given.
pub async fn connect(
    url: &str,
    token: Option<&str>,
) -> Result<RunningService<RoleClient, ()>, String> {
    tls();
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(t) = token {
        config = config.auth_header(t.to_string());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.map_err(|e| e.to_string())
}

/// Calls a tool and panics on a protocol-level failure.
pub async fn call(
    client: &RunningService<RoleClient, ()>,
    name: &str,
    args: Value,
) -> CallToolResult {
    let mut params = CallToolRequestParams::new(name.to_string());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {name} failed at the protocol level: {e}"))
}

/// A plain HTTP client for raw requests (no proxy from the environment).
/// `task_result_add` of `text` on task 51, started in the background: the client moves
/// into the task and comes back with the result (for tests that act while a call is in
/// flight).
pub fn add_in_background(
    client: RunningService<RoleClient, ()>,
    text: &'static str,
) -> tokio::task::JoinHandle<(RunningService<RoleClient, ()>, CallToolResult)> {
    tokio::spawn(async move {
        let result = call(
            &client,
            "task_result_add",
            json!({"taskId": 51, "text": text}),
        )
        .await;
        (client, result)
    })
}

pub fn http() -> reqwest::Client {
    tls();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// A JSON-RPC `initialize` body.
pub fn initialize_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0.0.0"}}})
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// A minimal 2024-11-05 HTTP+SSE client: GET /sse, then POST to the announced endpoint.
pub struct LegacyClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    response: reqwest::Response,
    buffer: String,
    /// `/message?sessionId=…` as announced.
    pub endpoint: String,
}

impl LegacyClient {
    /// Opens the event stream and reads the `endpoint` event.
    pub async fn open(base: &str, token: Option<&str>) -> LegacyClient {
        let http = http();
        let mut request = http
            .get(format!("{base}/sse"))
            .header("Accept", "text/event-stream");
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("GET /sse");
        assert_eq!(response.status(), 200, "GET /sse");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut client = LegacyClient {
            http,
            base: base.to_string(),
            token: token.map(str::to_string),
            response,
            buffer: String::new(),
            endpoint: String::new(),
        };
        let first = client.next_event().await.expect("endpoint event");
        assert_eq!(first.event, "endpoint", "{first:?}");
        assert!(first.data.starts_with("/message?sessionId="), "{first:?}");
        client.endpoint = first.data;
        client
    }

    /// The next event, or `None` when the server closed the stream.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(event);
                }
                continue; // keep-alive comment
            }
            match tokio::time::timeout(HANG, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                Ok(Ok(None)) | Ok(Err(_)) => return None,
                Err(_) => panic!("no event from the server for {HANG:?}"),
            }
        }
    }

    /// POSTs one JSON-RPC message; returns the HTTP status.
    pub async fn post(&self, message: Value) -> reqwest::StatusCode {
        let mut request = self
            .http
            .post(format!("{}{}", self.base, self.endpoint))
            .json(&message);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        request.send().await.expect("POST /message").status()
    }

    /// POSTs a request and reads events until its reply arrives.
    pub async fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        let status = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(status, 202, "{method}");
        self.reply(id).await
    }

    /// Reads events until the reply to `id` arrives.
    pub async fn reply(&mut self, id: u64) -> Value {
        loop {
            let event = self
                .next_event()
                .await
                .expect("stream closed before the reply");
            if event.event != "message" {
                continue;
            }
            let message: Value = serde_json::from_str(&event.data).expect("JSON message");
            if message["id"] == id {
                return message;
            }
        }
    }

    /// initialize + notifications/initialized.
    pub async fn handshake(&mut self) -> Value {
        let init = self
            .request(
                1,
                "initialize",
                json!({"protocolVersion": "2024-11-05", "capabilities": {},
                       "clientInfo": {"name": "legacy-test", "version": "0.0.0"}}),
            )
            .await;
        let status = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(status, 202);
        init
    }
}

/// A TCP relay in front of the sandbox that reports when a request for `needle` (a REST
/// method name) has reached the portal, i.e. the tool call is in flight.
pub struct PortalGate {
    /// The webhook URL to give the binary (through the relay).
    pub webhook_url: String,
    seen: tokio::sync::watch::Receiver<bool>,
}

impl PortalGate {
    pub async fn start(
        sandbox: &bitrix24_task_results_mcp::sandbox::Sandbox,
        needle: &'static str,
    ) -> PortalGate {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = format!("http://{}", listener.local_addr().unwrap());
        let upstream = sandbox.addr();
        let (tx, seen) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 64 * 1024];
                    // Relay request bytes, watching for the method; then relay both ways.
                    loop {
                        let Ok(n) = inbound.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 || outbound.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                            let _ = tx.send(true);
                            break;
                        }
                    }
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        PortalGate {
            webhook_url: sandbox.webhook_url().replace(&sandbox.base_url(), &relay),
            seen,
        }
    }

    /// Waits until the watched request has been sent to the portal.
    pub async fn reached(&mut self) {
        tokio::time::timeout(HANG, self.seen.wait_for(|seen| *seen))
            .await
            .expect("the call did not reach the portal")
            .expect("relay alive");
    }
}

/// A tool call in a connection of its own, with `token` as the bearer.
pub async fn call_as(url: &str, token: &str, tool: &str, args: Value) -> CallToolResult {
    let client = connect(url, Some(token))
        .await
        .expect("connect with the token");
    let r = call(&client, tool, args).await;
    client.cancel().await.ok();
    r
}
