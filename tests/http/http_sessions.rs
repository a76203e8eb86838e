//! Session bounds over HTTP, end to end: `--max-sessions` refuses a session past the
//! limit with 503 and a JSON-RPC error (streamable HTTP and legacy SSE share the pool),
//! `--session-idle-timeout` closes an idle session so that its id gets 404 and the
//! client starts over; the server keeps serving throughout.

use crate::support::http_support;

use http_support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// POSTs `body` to /mcp, in session `session` when given.
async fn post(server: &HttpServer, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = http()
        .post(server.mcp_url())
        .header("Accept", "application/json, text/event-stream")
        .json(body);
    if let Some(id) = session {
        request = request
            .header("Mcp-Session-Id", id)
            .header("MCP-Protocol-Version", "2025-06-18");
    }
    request.send().await.expect("POST /mcp")
}

/// initialize + notifications/initialized; the new session's id.
async fn open_session(server: &HttpServer) -> String {
    let reply = post(server, None, &initialize_body()).await;
    assert_eq!(reply.status(), 200, "initialize");
    let id = reply.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = reply.text().await;
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(server, Some(&id), &note).await.status(), 202);
    id
}

/// A ping in session `id`: its HTTP status.
async fn ping(server: &HttpServer, id: &str) -> StatusCode {
    let reply = post(
        server,
        Some(id),
        &json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
    )
    .await;
    let status = reply.status();
    let _ = reply.text().await;
    status
}

/// The JSON-RPC error a refused request carries.
async fn refused(reply: reqwest::Response) -> Value {
    assert_eq!(reply.status(), 503);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let error: Value = reply.json().await.expect("a JSON-RPC error body");
    assert_eq!(error["jsonrpc"], "2.0", "{error}");
    assert_eq!(error["error"]["code"], -32000, "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains('2') && message.contains("--max-sessions"),
        "{error}"
    );
    error
}

#[tokio::test]
async fn a_session_past_the_limit_gets_503_and_a_json_rpc_error() {
    // A long idle timeout: here no session may close on its own while the test runs.
    let server = spawn_http(
        &[
            "--sandbox",
            "--max-sessions",
            "2",
            "--session-idle-timeout",
            "600",
        ],
        &[],
    )
    .await;
    let first = open_session(&server).await;
    let second = open_session(&server).await;

    let error = refused(post(&server, None, &initialize_body()).await).await;
    assert_eq!(error["id"], 1, "the initialize's id: {error}");
    // The legacy transport draws on the same pool.
    let legacy = http()
        .get(format!("{}/sse", server.base))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let error = refused(legacy).await;
    assert!(error.get("id").is_none(), "{error}");

    // The open sessions are unharmed.
    assert_eq!(ping(&server, &first).await, 200);
    assert_eq!(ping(&server, &second).await, 200);

    // A session the client ends frees its slot.
    let deleted = http()
        .delete(server.mcp_url())
        .header("Mcp-Session-Id", &first)
        .header("MCP-Protocol-Version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    server.wait_for_log("HTTP session closed").await;
    let third = open_session(&server).await;
    assert_eq!(ping(&server, &third).await, 200);
    assert_eq!(ping(&server, &first).await, 404, "the deleted session");
    assert_eq!(ping(&server, &second).await, 200);
}

#[tokio::test]
async fn an_idle_session_is_dropped_and_its_id_gets_404() {
    let server = spawn_http(
        &[
            "--sandbox",
            "--max-sessions",
            "2",
            "--session-idle-timeout",
            "1",
            // A session must outlive the longest call: the budget may not exceed it.
            "--call-budget",
            "1",
        ],
        &[],
    )
    .await;
    let old = open_session(&server).await;
    // Waiting on the server's word, not on a clock.
    server.wait_for_log("HTTP session closed").await;
    assert_eq!(ping(&server, &old).await, 404, "the idle session's id");

    // A new initialize works, and the idle session's slot is free again: rmcp's own
    // client gets the second one and is served.
    let _new = open_session(&server).await;
    let client = connect(&server.mcp_url(), None).await.expect("connect");
    assert_eq!(
        client.list_all_tools().await.unwrap().len(),
        bitrix24_task_results_mcp::tools::REGISTRY.len()
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn an_idle_legacy_session_is_closed_and_its_endpoint_gets_404() {
    let server = spawn_http(
        &[
            "--sandbox",
            "--max-sessions",
            "2",
            "--session-idle-timeout",
            "1",
            // A session must outlive the longest call: the budget may not exceed it.
            "--call-budget",
            "1",
        ],
        &[],
    )
    .await;
    let mut client = LegacyClient::open(&server.base, None).await;
    client.handshake().await;
    server
        .wait_for_log("legacy SSE session closed after idling")
        .await;
    // The stream ends, and the endpoint is forgotten.
    while client.next_event().await.is_some() {}
    let status = client
        .post(json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
        .await;
    assert_eq!(status, 404);

    // A new session works.
    let mut again = LegacyClient::open(&server.base, None).await;
    let init = again.handshake().await;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
}
