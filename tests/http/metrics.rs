//! Metrics end to end (`--metrics-listen`): a real Prometheus server scrapes the binary
//! while tool calls run against the sandbox (one of them meeting a portal 503 that is
//! retried), and its HTTP API shows the numbers the test caused; `promtool check metrics`
//! accepts the exposition; no label carries a secret, a text or an id; without the flag
//! nothing more listens, and `/metrics` is never on the MCP port.

use crate::support::{common, http_support, metrics_support};

use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use common::{err, ok};
use http_support::{TOKEN, call, connect, http, run_to_exit, spawn_http};
use metrics_support::{Prometheus, listening_ports, metrics_addr, promtool_check, scrape};
use serde_json::json;

const ADD: &str = "tasks.task.result.add";
const LIST: &str = "tasks.task.result.list";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_calls_the_test_caused() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let webhook = sandbox.webhook_url();
    let server = spawn_http(
        &["--metrics-listen", "127.0.0.1:0"],
        &[
            ("BITRIX24_WEBHOOK_URL", webhook.as_str()),
            ("BITRIX24_RATE", "1000"),
            ("MCP_AUTH_TOKEN", TOKEN),
        ],
    )
    .await;
    let addr = metrics_addr(|| server.stderr()).await;
    let prometheus = Prometheus::start(&addr).await;
    let client = connect(&server.mcp_url(), Some(TOKEN)).await.unwrap();

    let text = "metrics run: the result text 9c41e7";
    for _ in 0..2 {
        ok(&call(&client, "task_result_list", json!({"taskId": 51})).await);
    }
    // One 503 QUERY_LIMIT_EXCEEDED, retried: the call still succeeds.
    sandbox.inject(ADD, Fault::QueryLimitExceeded { retry_after: None }, 1);
    ok(&call(
        &client,
        "task_result_add",
        json!({"taskId": 51, "text": text}),
    )
    .await);
    // Arguments the server refuses before anything is sent.
    err(&call(
        &client,
        "task_result_add",
        json!({"taskId": 51, "text": "  "}),
    )
    .await);
    let adds = common::requests_for(&sandbox, ADD);
    assert_eq!(
        adds.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 200]
    );

    prometheus
        .wait_for(
            "sum by (tool, outcome) (bitrix24_mcp_tool_calls_total)",
            &["tool", "outcome"],
            &[
                (&["task_result_list", "ok"], 2.0),
                (&["task_result_add", "ok"], 1.0),
                (&["task_result_add", "invalid_arguments"], 1.0),
            ],
        )
        .await;
    prometheus
        .wait_for(
            "sum by (tool) (bitrix24_mcp_tool_call_duration_seconds_count)",
            &["tool"],
            &[(&["task_result_list"], 2.0), (&["task_result_add"], 2.0)],
        )
        .await;
    prometheus
        .wait_for(
            "bitrix24_mcp_portal_retries_total",
            &["method"],
            &[(&[ADD], 1.0)],
        )
        .await;
    prometheus
        .wait_for(
            "bitrix24_mcp_portal_query_limit_answers_total",
            &["method"],
            &[(&[ADD], 1.0)],
        )
        .await;
    prometheus
        .wait_for(
            "sum by (method, status) (bitrix24_mcp_portal_requests_total)",
            &["method", "status"],
            &[
                (&[LIST, "200"], 2.0),
                (&[ADD, "503"], 1.0),
                (&[ADD, "200"], 1.0),
            ],
        )
        .await;
    prometheus
        .wait_for("count(bitrix24_mcp_build_info == 1)", &[], &[(&[], 1.0)])
        .await;

    let exposition = scrape(&addr).await;
    let problems = promtool_check(&exposition);
    assert!(
        problems.trim().is_empty(),
        "promtool check metrics:\n{problems}\n{exposition}"
    );
    // The MCP route is counted by its pattern.
    assert!(
        exposition.contains("bitrix24_mcp_http_requests_total{route=\"/mcp\",status=\"200\"}"),
        "{exposition}"
    );

    // Nothing of the run's secrets, texts or ids: only the closed label vocabularies.
    let secret = webhook
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert!(secret.len() >= 8, "{webhook}");
    for needle in [
        secret.as_str(),
        webhook.as_str(),
        TOKEN,
        text,
        "9c41e7",
        "/rest/",
    ] {
        assert!(
            !exposition.contains(needle),
            "the exposition holds {needle:?}:\n{exposition}"
        );
    }
    metrics_support::assert_known_labels(&exposition);
    for (name, value) in metrics_support::labels(&exposition) {
        match name.as_str() {
            "method" => {
                assert!(value.starts_with("tasks.") || value.starts_with("im.") || value == "other")
            }
            "route" => assert!(value.starts_with('/') || value == "other", "{value}"),
            "tool" => assert!(value.starts_with("task_"), "{value}"),
            _ => {}
        }
    }
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_and_never_on_the_mcp_port() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let webhook = sandbox.webhook_url();
    let env = [
        ("BITRIX24_WEBHOOK_URL", webhook.as_str()),
        ("MCP_AUTH_TOKEN", TOKEN),
    ];
    let mcp_port = |base: &str| base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let metrics_on_mcp_port = |base: String| async move {
        http()
            .get(format!("{base}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    };

    // Without the flag: the MCP port is the only one, and it has no /metrics.
    let plain = spawn_http(&[], &env).await;
    let client = connect(&plain.mcp_url(), Some(TOKEN)).await.unwrap();
    ok(&call(&client, "task_result_list", json!({"taskId": 51})).await);
    let pid = plain.child.id().unwrap();
    assert_eq!(
        listening_ports(pid).into_iter().collect::<Vec<_>>(),
        [mcp_port(&plain.base)]
    );
    let reply = metrics_on_mcp_port(plain.base.clone()).await;
    assert_ne!(reply.status(), reqwest::StatusCode::OK);
    assert!(!reply.text().await.unwrap().contains("bitrix24_mcp_"));
    assert!(!plain.stderr().contains("metrics on"), "{}", plain.stderr());
    drop(client);

    // With it: a second listener, and still nothing on the MCP port.
    let metered = spawn_http(&["--metrics-listen", "127.0.0.1:0"], &env).await;
    let addr = metrics_addr(|| metered.stderr()).await;
    let metrics_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let pid = metered.child.id().unwrap();
    let mut expected = vec![mcp_port(&metered.base), metrics_port];
    expected.sort();
    assert_eq!(
        listening_ports(pid).into_iter().collect::<Vec<_>>(),
        expected
    );
    let reply = metrics_on_mcp_port(metered.base.clone()).await;
    assert_ne!(reply.status(), reqwest::StatusCode::OK);
    assert!(scrape(&addr).await.contains("bitrix24_mcp_build_info"));

    // The MCP address itself is refused as the metrics address.
    let (status, stderr) = run_to_exit(
        &[
            "--transport",
            "http",
            "--listen",
            "127.0.0.1:8765",
            "--metrics-listen",
            "127.0.0.1:8765",
        ],
        &[("BITRIX24_SANDBOX", "1")],
    )
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--metrics-listen"), "{stderr}");
}
