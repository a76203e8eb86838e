//! Secrets never reach logs, errors or tool output, even at trace level.

use crate::support::common;

use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use common::*;
use serde_json::json;

const SECRET: &str = "zq7secretwebhookcode9x";

fn assert_clean(haystack: &str, what: &str) {
    assert!(
        !haystack.contains(SECRET),
        "the webhook secret leaked into {what}: {haystack}"
    );
}

#[tokio::test]
async fn webhook_secret_stays_out_of_logs_and_results_at_trace_level() {
    let opts = SandboxOptions {
        webhook_secret: SECRET.into(),
        ..SandboxOptions::default()
    };
    let (_sandbox, s) = spawn_with_sandbox(opts, &[("RUST_LOG", "trace")]).await;
    let mut outputs = Vec::new();
    for (tool, args) in [
        (
            "task_result_add",
            json!({"taskId": 51, "text": "secret check"}),
        ),
        ("task_result_list", json!({"taskId": 51})),
        ("task_result_update", json!({"id": 17, "text": "x"})),
        ("task_result_delete", json!({"id": 424242})),
        ("task_result_add_from_chat", json!({"messageId": 900})),
        ("task_result_add", json!({"taskId": "bad"})),
    ] {
        outputs.push(serde_json::to_string(&s.call(tool, args).await).unwrap());
    }
    for out in &outputs {
        assert_clean(out, "a tool result");
    }
    let stderr = s.stderr();
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "trace logging was on: {stderr}"
    );
    assert_clean(&stderr, "stderr");
    s.close().await;
}

#[tokio::test]
async fn unreachable_portal_error_names_the_host_not_the_secret() {
    // A port nothing listens on: the connection is refused, and reqwest's error embeds the URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/rest/1/{SECRET}/");
    let s = spawn(
        &[],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;
    let result = s
        .call("task_result_add", json!({"taskId": 51, "text": "x"}))
        .await;
    let e = err(&result);
    assert!(
        e.contains("Could not connect") && e.contains(&format!("127.0.0.1:{port}")),
        "{e}"
    );
    assert_clean(&e, "the error");
    assert_clean(&s.stderr(), "stderr");
    s.close().await;
}
