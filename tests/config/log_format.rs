//! `--log-format json`: every stderr line is one JSON object, with the secrets masked as in
//! text logs, over stdio (where stdout stays pure JSON-RPC) and over HTTP; calls that fail
//! log too.

use crate::support::{common, http_support, raw};

use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use raw::{RawSession, assert_no_panic, assert_stdout_is_jsonrpc};
use serde_json::{Value, json};

const SECRET: &str = "zq7jsonlogwebhooksecret4k";

/// Every line of `stderr` is a JSON object with a timestamp, a level and a message (or
/// fields), and none holds the secret; returns the parsed lines.
fn assert_json_lines(stderr: &str) -> Vec<Value> {
    assert!(!stderr.contains(SECRET), "the secret leaked: {stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {line}"));
            assert!(v.is_object(), "not an object: {line}");
            assert!(v["timestamp"].is_string(), "no timestamp: {line}");
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&v["level"].as_str().unwrap_or("")),
                "no level: {line}"
            );
            v
        })
        .collect();
    assert!(!lines.is_empty(), "no log lines at all");
    lines
}

fn sandbox_options() -> SandboxOptions {
    SandboxOptions {
        webhook_secret: SECRET.into(),
        ..SandboxOptions::default()
    }
}

#[tokio::test]
async fn stdio_json_logs_are_json_lines_without_secrets_and_stdout_stays_jsonrpc() {
    let sandbox = Sandbox::start(sandbox_options()).await.unwrap();
    let url = sandbox.webhook_url();
    assert!(url.contains(SECRET));
    let mut s = RawSession::start(
        &["--log-format", "json"],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("RUST_LOG", "trace"),
        ],
    );
    s.initialize().await;
    s.call(
        json!(1),
        "task_result_add",
        json!({"taskId": 51, "text": "json logs"}),
    )
    .await;
    // A call refused before the portal, and one the portal fails on every attempt.
    s.call(json!(2), "task_result_add", json!({"taskId": "bad"}))
        .await;
    let fault = Fault::Html;
    sandbox.inject(
        "tasks.task.result.list",
        fault.clone(),
        common::attempts_to_exhaust(&fault, false),
    );
    let failed = s
        .call(json!(3), "task_result_list", json!({"taskId": 51}))
        .await;
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    let (status, lines, stderr) = s.finish().await;
    assert!(status.success(), "{status:?}\n{stderr}");
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
    let logged = assert_json_lines(&stderr);
    // Trace level: the portal client's own lines came through, fields and all.
    assert!(
        logged
            .iter()
            .any(|l| l["level"] == "TRACE" || l["level"] == "DEBUG"),
        "{stderr}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l["message"] == "bitrix24-task-results-mcp starting"
                && l["version"].is_string()),
        "the start-up line keeps its fields: {stderr}"
    );
}

#[tokio::test]
async fn json_logs_of_a_failing_portal_hold_no_secret() {
    // Nothing listens there: every attempt fails, and the call with it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/rest/1/{SECRET}/");
    let mut s = RawSession::start(
        &[],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("MCP_LOG_FORMAT", "json"),
            ("RUST_LOG", "trace"),
        ],
    );
    s.initialize().await;
    let failed = s
        .call(
            json!(1),
            "task_result_add",
            json!({"taskId": 51, "text": "x"}),
        )
        .await;
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    let (_, lines, stderr) = s.finish().await;
    assert_stdout_is_jsonrpc(&lines);
    for line in &lines {
        assert!(!line.contains(SECRET), "{line}");
    }
    let logged = assert_json_lines(&stderr);
    assert!(
        logged
            .iter()
            .any(|l| l["message"] == "tool call failed" && l["tool"] == "task_result_add"),
        "the failure was logged with its fields: {stderr}"
    );
}

#[tokio::test]
async fn http_json_logs_are_json_lines_without_secrets() {
    let sandbox = Sandbox::start(sandbox_options()).await.unwrap();
    let url = sandbox.webhook_url();
    let mut server = http_support::spawn_http(
        &["--log-format", "json"],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("MCP_AUTH_TOKEN", http_support::TOKEN),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let client = http_support::connect(&server.mcp_url(), Some(http_support::TOKEN))
        .await
        .expect("connect");
    common::ok(
        &http_support::call(
            &client,
            "task_result_add",
            json!({"taskId": 51, "text": "over http"}),
        )
        .await,
    );
    // Access denied by the portal: an error result, logged.
    common::err(
        &http_support::call(
            &client,
            "task_result_add",
            json!({"taskId": 53, "text": "not visible"}),
        )
        .await,
    );
    client.cancel().await.ok();
    // A wrong token: refused, and the token never shows.
    let refused = http_support::http()
        .post(server.mcp_url())
        .bearer_auth("wrong-token-value-123456")
        .json(&http_support::initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    server.sigterm().await;
    assert!(server.wait().await.success());
    let stderr = server.stderr();
    assert!(!stderr.contains(http_support::TOKEN), "{stderr}");
    let logged = assert_json_lines(&stderr);
    assert!(
        logged.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on http://"))),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_start_up_error_is_a_json_line_too() {
    let out = common::command(
        &["--log-format", "json", "--sandbox"],
        &[("BITRIX24_ACCESS_TOKEN", "tok-json-startup-1234")],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logged = assert_json_lines(&stderr);
    assert!(
        logged.iter().any(|l| l["level"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("--sandbox"))),
        "{stderr}"
    );
}
