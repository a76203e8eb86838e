//! HTTP throughput: tools/call per second through `/mcp` (streamable HTTP, stateful
//! sessions) with N concurrent sessions against the sandbox, pacing disabled.
//!
//! The client is a few lines of reqwest rather than rmcp's client, so that the driver,
//! which shares the machine with the server and the sandbox, costs as little as it can.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};

use crate::peer::PROTOCOL;
use crate::{Bins, Opts, Row, server_command};

/// The fastest rate and largest burst the pacing flags accept: pacing out of the way.
pub const NO_PACING: [&str; 4] = ["--rate", "100000", "--burst", "1000000"];

/// Whether the built server has the flags this benchmark needs.
pub fn supports(bins: &Bins, flags: &[&str]) -> bool {
    let help = server_command(bins, &["--help"], &[])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    flags.iter().all(|f| help.contains(f))
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The server on HTTP; killed on drop.
pub struct HttpServer {
    child: Child,
    pub url: String,
}

impl HttpServer {
    pub fn start(bins: &Bins, webhook: &str, extra: &[&str]) -> HttpServer {
        Self::start_on(
            bins,
            free_port(),
            extra,
            &[("BITRIX24_WEBHOOK_URL", webhook)],
        )
    }

    /// The server on `port` with `env` as its portal settings.
    pub fn start_on(bins: &Bins, port: u16, extra: &[&str], env: &[(&str, &str)]) -> HttpServer {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--transport", "http", "--listen", listen.as_str()];
        args.extend_from_slice(extra);
        let child = server_command(bins, &args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the HTTP server");
        // Wait until it accepts connections.
        let started = Instant::now();
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the HTTP server did not start listening on {listen}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        HttpServer {
            child,
            url: format!("http://{listen}/mcp"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One streamable-HTTP MCP session.
pub struct HttpSession {
    client: reqwest::Client,
    url: String,
    session: Option<String>,
    bearer: Option<String>,
    next_id: u64,
}

/// The JSON-RPC message inside an answer: the body itself (JSON) or its `data:` line (SSE).
fn message(body: &str) -> Option<serde_json::Value> {
    if body.trim_start().starts_with('{') {
        return serde_json::from_str(body).ok();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
}

impl HttpSession {
    pub async fn open(client: reqwest::Client, url: &str) -> HttpSession {
        Self::open_as(client, url, None).await
    }

    /// A session whose requests carry `Authorization: Bearer <bearer>`.
    pub async fn open_as(client: reqwest::Client, url: &str, bearer: Option<&str>) -> HttpSession {
        let mut s = HttpSession {
            client,
            url: url.to_string(),
            session: None,
            bearer: bearer.map(String::from),
            next_id: 1,
        };
        let init = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{{\"protocolVersion\":\"{PROTOCOL}\",\"capabilities\":{{}},\"clientInfo\":{{\"name\":\"perf-bench\",\"version\":\"0\"}}}}}}"
        );
        let response = s.post(init).await;
        s.session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = response.text().await.expect("initialize body");
        assert!(
            message(&body).is_some_and(|m| m.get("result").is_some()),
            "initialize failed: {body}"
        );
        let r = s
            .post("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}".into())
            .await;
        assert!(r.status().is_success(), "initialized: {}", r.status());
        s
    }

    async fn post(&self, body: String) -> reqwest::Response {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL)
            .body(body);
        if let Some(id) = &self.session {
            request = request.header("mcp-session-id", id);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("POST /mcp")
    }

    /// One tools/call; Ok(true) on a successful tool result, Ok(false) on isError.
    pub async fn call(&mut self, tool: &str, arguments: &str) -> Result<bool, String> {
        let id = self.next_id;
        self.next_id += 1;
        let response = self
            .post(format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{arguments}}}}}"
            ))
            .await;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        let Some(m) = message(&body) else {
            return Err(format!("HTTP {status}: {body}"));
        };
        match m.get("result") {
            Some(r) => Ok(r.get("isError") != Some(&serde_json::Value::Bool(true))),
            None => Err(m.to_string()),
        }
    }
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("reqwest client")
}

pub fn run(bins: &Bins, rt: &tokio::runtime::Runtime, opts: &Opts) -> Vec<Row> {
    println!();
    println!(
        "## HTTP throughput: tools/call task_result_list through /mcp, {} sessions, pacing off",
        opts.sessions
    );
    let measure = format!(
        "tools/call per second over HTTP ({} sessions)",
        opts.sessions
    );
    if !supports(bins, &["--transport", "--listen", "--rate", "--burst"]) {
        println!(
            "pending: this build has no --transport http/--listen (issue 3) or --rate/--burst (issue 4)"
        );
        return vec![pending(measure, "≥ 5,000/s")];
    }
    // A sandbox of its own, without a rate limit.
    let sandbox = rt
        .block_on(Sandbox::start(SandboxOptions::default()))
        .expect("sandbox");
    let server = HttpServer::start(bins, &sandbox.webhook_url(), &NO_PACING);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client = http_client();
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs_f64(opts.seconds);
    let (rate, ok, bad) = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..opts.sessions {
            let mut session = HttpSession::open(client.clone(), &server.url).await;
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match session.call("task_result_list", "{\"taskId\":51}").await {
                        Ok(true) => done.fetch_add(1, Ordering::Relaxed),
                        Ok(false) | Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        tokio::time::sleep(warmup).await;
        let (c0, f0, t0) = (
            done.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            Instant::now(),
        );
        tokio::time::sleep(window).await;
        let (c1, f1, t1) = (
            done.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            Instant::now(),
        );
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let secs = t1.duration_since(t0).as_secs_f64();
        ((c1 - c0) as f64 / secs, c1 - c0, f1 - f0)
    });
    drop(server);
    sandbox.shutdown();
    println!(
        "{ok} successful calls in {:.1} s ({bad} failed): {rate:.0} tools/call per second",
        opts.seconds
    );
    vec![Row {
        measure,
        ours: format!("{rate:.0}/s"),
        reference: format!("{ok} calls in {:.0} s, {bad} failed", opts.seconds),
        result: format!("{rate:.0}/s"),
        target: "≥ 5,000/s".into(),
        met: Some(rate >= 5000.0 && bad == 0),
    }]
}

/// A row for a benchmark this build cannot run yet.
pub fn pending(measure: String, target: &str) -> Row {
    Row {
        measure,
        ours: "pending".into(),
        reference: "-".into(),
        result: "-".into(),
        target: target.into(),
        met: None,
    }
}
