//! End to end over streamable HTTP: the binary with `--transport http`, rmcp's streamable
//! HTTP client with a bearer token, and the sandbox portal over real HTTP.

use crate::support::{common, http_support};

use std::time::Duration;

use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use common::{ok, requests_for, text};
use http_support::*;
use rmcp::RoleClient;
use rmcp::service::RunningService;
use serde_json::{Value, json};

const TOOL_NAMES: [&str; 8] = [
    "task_search",
    "task_get",
    "task_result_add",
    "task_result_add_from_chat",
    "task_result_update",
    "task_result_list",
    "task_result_delete",
    "task_chat_messages_list",
];

/// Lists the tools and calls each one, checking the answers.
async fn list_and_call_every_tool(client: &RunningService<RoleClient, ()>, text_tag: &str) {
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "bitrix24-task-results-mcp"
    );
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOL_NAMES);

    let added = ok(&call(
        client,
        "task_result_add",
        json!({"taskId": 51, "text": text_tag}),
    )
    .await);
    let id = added["id"].as_u64().expect("result id");
    assert_eq!(added["text"], text_tag);
    let page = ok(&call(client, "task_result_list", json!({"taskId": 51})).await);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id),
        "{page}"
    );
    let updated = ok(&call(
        client,
        "task_result_update",
        json!({"id": id, "text": format!("{text_tag} (edited)")}),
    )
    .await);
    assert_eq!(updated["text"], format!("{text_tag} (edited)"));
    let from_chat = ok(&call(
        client,
        "task_result_add_from_chat",
        json!({"messageId": 335}),
    )
    .await);
    assert_eq!(from_chat["taskId"], 51);
    let found = ok(&call(client, "task_search", json!({"query": "report"})).await);
    assert_eq!(found["items"][0]["id"], 51, "{found}");
    let task = ok(&call(client, "task_get", json!({"taskId": 51})).await);
    assert_eq!(task["containsResults"], true, "{task}");
    let deleted = ok(&call(client, "task_result_delete", json!({"id": id})).await);
    assert_eq!(deleted, json!({"id": id, "deleted": true}));
    // Bad input is a tool error and the session keeps serving.
    let bad = call(client, "task_result_add", json!({"taskId": 51})).await;
    assert_eq!(bad.is_error, Some(true), "{}", text(&bad));
    ok(&call(client, "task_result_list", json!({"taskId": 51})).await);
}

#[tokio::test]
async fn stateful_sessions_list_and_call_every_tool_with_a_token() {
    let server = spawn_http(&["--sandbox"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let client = connect(&server.mcp_url(), Some(TOKEN))
        .await
        .expect("connect with the token");
    list_and_call_every_tool(&client, "done over streamable HTTP").await;
    client.cancel().await.unwrap();

    // The handshake really created a session.
    let reply = http()
        .post(server.mcp_url())
        .bearer_auth(TOKEN)
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(reply.headers().contains_key("mcp-session-id"));
    assert!(!server.stderr().contains(TOKEN), "token in the log");
}

#[tokio::test]
async fn stateless_mode_lists_and_calls_every_tool_with_plain_json() {
    let server = spawn_http(&["--sandbox", "--stateless"], &[]).await;
    let client = connect(&server.mcp_url(), None).await.expect("connect");
    list_and_call_every_tool(&client, "done over stateless HTTP").await;
    client.cancel().await.unwrap();

    // No session id, and a plain JSON body.
    let reply = http()
        .post(server.mcp_url())
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(!reply.headers().contains_key("mcp-session-id"));
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = reply.json().await.unwrap();
    assert_eq!(
        body["result"]["serverInfo"]["name"],
        "bitrix24-task-results-mcp"
    );
}

#[tokio::test]
async fn concurrent_sessions_get_their_own_answers() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let webhook = sandbox.webhook_url();
    let server = spawn_http(&[], &[("BITRIX24_WEBHOOK_URL", webhook.as_str())]).await;
    let url = server.mcp_url();
    let sessions = (0..6).map(|n| {
        let url = url.clone();
        tokio::spawn(async move {
            let client = connect(&url, None).await.expect("connect");
            let mut mine = Vec::new();
            for round in 0..3 {
                let tag = format!("session {n} round {round}");
                let added = ok(&call(
                    &client,
                    "task_result_add",
                    json!({"taskId": 51, "text": tag}),
                )
                .await);
                assert_eq!(added["text"], tag, "session {n} got someone else's answer");
                mine.push(added["id"].as_u64().unwrap());
            }
            // Each session deletes its own results and sees exactly those ids come back.
            for id in &mine {
                let deleted = ok(&call(&client, "task_result_delete", json!({"id": id})).await);
                assert_eq!(deleted["id"], *id);
            }
            client.cancel().await.unwrap();
            mine
        })
    });
    let mut all: Vec<u64> = Vec::new();
    for handle in futures::future::join_all(sessions).await {
        all.extend(handle.expect("session task"));
    }
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count, "two sessions were handed the same result");
    assert_eq!(requests_for(&sandbox, "tasks.task.result.add").len(), 18);
}

#[tokio::test]
async fn sigterm_lets_a_slow_call_finish_then_exits_zero() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    sandbox.inject(
        "tasks.task.result.add",
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    let mut gate = PortalGate::start(&sandbox, "tasks.task.result.add").await;
    let mut server = spawn_http(&[], &[("BITRIX24_WEBHOOK_URL", gate.webhook_url.as_str())]).await;
    let client = connect(&server.mcp_url(), None).await.expect("connect");

    let slow = add_in_background(client, "slow one");
    // The call is in flight once the portal has the request.
    gate.reached().await;
    server.sigterm().await;
    server.wait_for_log("stopped accepting connections").await;

    // No new connections once shutdown began.
    let refused = server.healthz().await;
    assert!(
        refused.is_err(),
        "accepted a connection during shutdown: {refused:?}"
    );

    let (client, result) = tokio::time::timeout(HANG, slow)
        .await
        .expect("the call in flight got no answer")
        .unwrap();
    let added = ok(&result);
    assert_eq!(added["text"], "slow one");
    assert!(sandbox.results().iter().any(|r| r["id"] == added["id"]));
    let status = server.wait().await;
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
    drop(client);
}

#[tokio::test]
async fn healthz_needs_no_token_and_reveals_nothing() {
    let server = spawn_http(&["--sandbox"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let reply = server.healthz().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.text().await.unwrap(), "ok");
}
