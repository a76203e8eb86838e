//! The audit trail over stdio with a webhook (`--audit-log`): writes are recorded as the
//! webhook's user, reads are not; `-` puts the lines on stderr and leaves stdout to
//! JSON-RPC; a trail that cannot be written does not stop a write.

use crate::support::{common, raw};

use std::os::unix::fs::PermissionsExt;

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use common::{ok, spawn_with_sandbox};
use raw::{RawSession, assert_no_panic, assert_stdout_is_jsonrpc};
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "zq7auditwebhooksecret4k";

fn options() -> SandboxOptions {
    SandboxOptions {
        webhook_secret: WEBHOOK_SECRET.into(),
        ..SandboxOptions::default()
    }
}

/// The JSON objects of an audit file's (or stderr's) lines that parse as audit events.
fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect()
}

#[tokio::test]
async fn webhook_writes_are_recorded_as_its_user_and_reads_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let shown = path.display().to_string();
    let (sandbox, s) = spawn_with_sandbox(options(), &[("MCP_AUDIT_LOG", &shown)]).await;
    let first = format!("audit text {}", uuid::Uuid::new_v4());
    let second = format!("audit change {}", uuid::Uuid::new_v4());
    let added = ok(&s
        .call("task_result_add", json!({"taskId": 51, "text": first}))
        .await);
    let id = added["id"].as_u64().expect("a result id");
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    ok(&s.call("task_get", json!({"taskId": 51})).await);
    ok(&s
        .call("task_result_update", json!({"id": id, "text": second}))
        .await);
    ok(&s.call("task_result_delete", json!({"id": id})).await);
    // Refused before the portal: still a call of a write tool.
    common::err(&s.call("task_result_add", json!({"taskId": "x"})).await);
    s.close().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines = events(&text);
    assert_eq!(
        lines.len(),
        text.lines().count(),
        "every line parses: {text}"
    );
    let short: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l["tool"].as_str().unwrap_or_default(),
                l["outcome"].as_str().unwrap_or_default(),
                l["task_id"].as_u64(),
                l["result_id"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        short,
        [
            ("task_result_add", "ok", Some(51), Some(id)),
            ("task_result_update", "ok", Some(51), Some(id)),
            ("task_result_delete", "ok", None, Some(id)),
            ("task_result_add", "invalid_arguments", None, None),
        ],
        "{text}"
    );
    let host = sandbox
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    for l in &lines {
        assert_eq!(l["event"], "tool_call", "{l}");
        assert_eq!(l["identity"], "webhook", "{l}");
        assert_eq!(l["user_id"], 1, "the webhook's user: {l}");
        assert_eq!(l["portal"], json!(host), "{l}");
        assert!(
            l.get("member_id").is_none() && l.get("client_id").is_none(),
            "{l}"
        );
        assert!(l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{l}");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
    for secret in [WEBHOOK_SECRET, &first, &second] {
        assert!(!text.contains(secret), "{secret} in the audit log: {text}");
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[tokio::test]
async fn a_dash_writes_the_trail_to_stderr_and_stdout_stays_json_rpc() {
    let sandbox = Sandbox::start(options()).await.unwrap();
    let url = sandbox.webhook_url();
    let mut s = RawSession::start(
        &["--audit-log", "-"],
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    );
    s.initialize().await;
    let added = s
        .call(
            json!(1),
            "task_result_add",
            json!({"taskId": 51, "text": "to stderr"}),
        )
        .await;
    let id = added["result"]["structuredContent"]["id"].clone();
    assert!(id.is_u64(), "{added}");
    s.call(json!(2), "task_result_delete", json!({"id": id}))
        .await;
    let (_, lines, stderr) = s.finish().await;
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
    assert!(
        lines.iter().all(|l| !l.contains("\"event\":\"tool_call\"")),
        "{lines:?}"
    );
    let recorded = events(&stderr);
    let tools: Vec<_> = recorded.iter().map(|l| l["tool"].clone()).collect();
    assert_eq!(
        tools,
        [json!("task_result_add"), json!("task_result_delete")],
        "{stderr}"
    );
    assert!(!stderr.contains(WEBHOOK_SECRET), "{stderr}");
}

#[tokio::test]
async fn a_trail_that_cannot_be_written_does_not_stop_the_write() {
    let text = format!("written anyway {}", uuid::Uuid::new_v4());
    let (sandbox, s) = spawn_with_sandbox(options(), &[("MCP_AUDIT_LOG", "/dev/full")]).await;
    let added = ok(&s
        .call("task_result_add", json!({"taskId": 51, "text": text}))
        .await);
    assert!(
        sandbox
            .results()
            .iter()
            .any(|r| r["id"] == added["id"] && r["text"] == json!(text)),
        "the result reached the portal: {:?}",
        sandbox.results()
    );
    let stderr = s.stderr();
    let failure = stderr
        .lines()
        .find(|l| l.contains("the audit log could not record an event"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(failure.contains("ERROR"), "{failure}");
    assert!(failure.contains("task_result_add"), "{failure}");
    assert!(!failure.contains(&text), "{failure}");
    s.close().await;
}
