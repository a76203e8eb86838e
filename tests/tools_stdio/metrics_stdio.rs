//! Metrics over stdio, when asked (`MCP_METRICS_LISTEN`): the stdio server serves
//! `/metrics` on its own listener and counts its tool calls there; stdout still carries
//! only JSON-RPC.

use crate::support::{common, metrics_support};

use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use common::{ok, spawn_with_sandbox};
use metrics_support::{metrics_addr, sample, scrape};
use serde_json::json;

#[tokio::test]
async fn a_stdio_server_serves_metrics_when_asked() {
    let (sandbox, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[("MCP_METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let addr = metrics_addr(|| s.stderr()).await;
    for _ in 0..3 {
        ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    }
    let missing = s.call("task_result_list", json!({"taskId": 999_999})).await;
    assert_eq!(missing.is_error, Some(true));
    // Each call is counted before its answer is sent.
    let exposition = scrape(&addr).await;
    let calls = |outcome: &str| {
        sample(
            &exposition,
            &format!(
                "bitrix24_mcp_tool_calls_total{{tool=\"task_result_list\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(calls("ok"), Some(3.0), "{exposition}");
    // The sandbox, like a portal, answers a task one cannot see with an access error.
    assert_eq!(calls("access"), Some(1.0), "{exposition}");
    assert_eq!(
        sample(
            &exposition,
            "bitrix24_mcp_portal_requests_total{method=\"tasks.task.result.list\",status=\"200\"}"
        ),
        Some(3.0),
        "{exposition}"
    );
    metrics_support::assert_known_labels(&exposition);
    let secret = sandbox.webhook_url();
    assert!(!exposition.contains(&secret), "{exposition}");
    s.close().await;
}
