//! The stdio protocol surface, spoken as raw JSON-RPC lines: protocol versions,
//! discovery, ping, unknown methods, start-up errors, shutdown and stdout purity.

use crate::support::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Raw {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Raw {
        let mut cmd = command(args, env);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Raw {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, msg: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads lines until the response with `id`; every line must be JSON-RPC.
    async fn response(&mut self, id: Value) -> Value {
        let deadline = Duration::from_secs(20);
        tokio::time::timeout(deadline, async {
            loop {
                let line = self
                    .stdout
                    .next_line()
                    .await
                    .unwrap()
                    .expect("stdout closed early");
                let msg: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("non-JSON on stdout: {line:?}: {e}"));
                assert_eq!(msg["jsonrpc"], "2.0", "{line}");
                if msg.get("id") == Some(&id) {
                    return msg;
                }
            }
        })
        .await
        .expect("response in time")
    }

    async fn initialize(&mut self, version: &str) -> Value {
        self.send(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"raw-test","version":"0"}}})).await;
        let r = self.response(json!(1)).await;
        self.send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        r
    }
}

#[tokio::test]
async fn initialize_at_each_protocol_generation() {
    for (asked, answered) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2024-11-05"),
    ] {
        let mut raw = Raw::start(&["--sandbox"], &[]);
        let r = raw.initialize(asked).await;
        assert_eq!(r["result"]["protocolVersion"], answered, "{r}");
        assert_eq!(
            r["result"]["serverInfo"]["name"],
            "bitrix24-task-results-mcp"
        );
        assert!(r["result"]["capabilities"]["tools"].is_object(), "{r}");
        assert!(r["result"]["capabilities"]["prompts"].is_object(), "{r}");
        assert!(r["result"]["capabilities"]["resources"].is_object(), "{r}");
        assert!(
            r["result"]["capabilities"]["completions"].is_object(),
            "{r}"
        );
        raw.send(json!({"jsonrpc":"2.0","id":2,"method":"ping"}))
            .await;
        assert_eq!(raw.response(json!(2)).await["result"], json!({}));
        raw.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}))
            .await;
        assert_eq!(
            raw.response(json!(3)).await["result"]["tools"]
                .as_array()
                .unwrap()
                .len(),
            bitrix24_task_results_mcp::tools::REGISTRY.len()
        );
        raw.send(json!({"jsonrpc":"2.0","id":4,"method":"no/such/method"}))
            .await;
        assert_eq!(raw.response(json!(4)).await["error"]["code"], -32601);
        // Resources are announced (the task-results template), with no fixed resources.
        raw.send(json!({"jsonrpc":"2.0","id":5,"method":"resources/list"}))
            .await;
        assert_eq!(
            raw.response(json!(5)).await["result"]["resources"],
            json!([])
        );
        // Completion is announced (task ids, issue 21) and answers a list of values.
        raw.send(json!({"jsonrpc":"2.0","id":6,"method":"completion/complete","params":{
            "ref":{"type":"ref/prompt","name":"record_result"},"argument":{"name":"taskId","value":"5"}}}))
            .await;
        let answer = raw.response(json!(6)).await;
        assert!(
            answer["result"]["completion"]["values"].is_array(),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn discover_flow_of_2026_07_28() {
    let mut raw = Raw::start(&["--sandbox"], &[]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"}
    });
    raw.send(json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta": meta}}))
        .await;
    let r = raw.response(json!(1)).await;
    let versions = r["result"]["supportedVersions"]
        .as_array()
        .expect("supportedVersions")
        .clone();
    assert!(versions.contains(&json!("2026-07-28")), "{r}");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "bitrix24-task-results-mcp"
    );
    raw.send(json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta": meta}}))
        .await;
    let r = raw.response(json!(2)).await;
    assert_eq!(
        r["result"]["tools"].as_array().map(Vec::len),
        Some(bitrix24_task_results_mcp::tools::REGISTRY.len()),
        "{r}"
    );
    raw.send(json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"_meta": meta, "name":"task_result_list","arguments":{"taskId":51}}})).await;
    let r = raw.response(json!(3)).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
}

#[tokio::test]
async fn exits_promptly_when_stdin_closes() {
    let mut raw = Raw::start(&["--sandbox"], &[]);
    raw.initialize("2025-11-25").await;
    let started = Instant::now();
    drop(raw.stdin.take());
    let status = tokio::time::timeout(Duration::from_secs(5), raw.child.wait())
        .await
        .expect("exit")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Generous bound for a shared machine; the target is well under a second.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[cfg(unix)]
#[tokio::test]
async fn exits_on_sigterm_and_sigint_with_stdin_open() {
    for signal in ["-TERM", "-INT"] {
        let mut raw = Raw::start(&["--sandbox"], &[]);
        raw.initialize("2025-11-25").await;
        let pid = raw.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(5), raw.child.wait())
            .await
            .unwrap_or_else(|_| panic!("still running after {signal}"))
            .unwrap();
        assert!(status.success(), "{signal}: {status:?}");
    }
}

#[tokio::test]
async fn start_up_without_a_portal_explains_what_to_set() {
    let out = command(&[], &[])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "BITRIX24_WEBHOOK_URL",
        "BITRIX24_PORTAL_URL",
        "BITRIX24_ACCESS_TOKEN",
        "--sandbox",
    ] {
        assert!(stderr.contains(needle), "{needle} missing in: {stderr}");
    }
}

#[tokio::test]
async fn a_bad_webhook_url_is_refused_without_echoing_it() {
    let out = command(
        &[],
        &[(
            "BITRIX24_WEBHOOK_URL",
            "https://p.example/rest/abc/topsecretvalue/",
        )],
    )
    .stdin(Stdio::null())
    .output()
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BITRIX24_WEBHOOK_URL") && !stderr.contains("topsecretvalue"),
        "{stderr}"
    );
}

#[tokio::test]
async fn help_lists_flags_with_their_environment_variables() {
    let out = command(&["--help"], &[]).output().await.unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--webhook-url",
        "BITRIX24_WEBHOOK_URL",
        "--sandbox",
        "--log-level",
        "RUST_LOG",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}
