//! End to end over the legacy 2024-11-05 HTTP+SSE transport (`GET /sse` +
//! `POST /message?sessionId=…`), with a small client written here (rmcp 3 has none).

use crate::support::http_support;

use std::time::Duration;

use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use http_support::*;
use serde_json::{Value, json};

/// The structured content of a successful `tools/call` reply.
fn ok(reply: &Value) -> Value {
    let result = &reply["result"];
    assert_eq!(result["isError"], json!(false), "{reply}");
    let structured = result["structuredContent"].clone();
    let text: Value = serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(structured, text, "text content must be the same JSON");
    structured
}

fn call(id: u64, name: &str, arguments: Value) -> (u64, &'static str, Value) {
    (
        id,
        "tools/call",
        json!({"name": name, "arguments": arguments}),
    )
}

#[tokio::test]
async fn legacy_sse_lists_and_calls_every_tool_with_a_token() {
    let server = spawn_http(&["--sandbox"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let mut client = LegacyClient::open(&server.base, Some(TOKEN)).await;
    let init = client.handshake().await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "bitrix24-task-results-mcp"
    );

    let tools = client.request(2, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "task_search",
            "task_get",
            "task_result_add",
            "task_result_add_from_chat",
            "task_result_update",
            "task_result_list",
            "task_result_delete",
            "task_chat_messages_list"
        ]
    );

    let (id, method, params) = call(
        3,
        "task_result_add",
        json!({"taskId": 51, "text": "done over SSE"}),
    );
    let added = ok(&client.request(id, method, params).await);
    let result_id = added["id"].as_u64().unwrap();
    assert_eq!(added["text"], "done over SSE");

    let (id, method, params) = call(4, "task_result_list", json!({"taskId": 51}));
    let page = ok(&client.request(id, method, params).await);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == result_id)
    );

    let (id, method, params) = call(
        5,
        "task_result_update",
        json!({"id": result_id, "text": "edited over SSE"}),
    );
    assert_eq!(
        ok(&client.request(id, method, params).await)["text"],
        "edited over SSE"
    );

    let (id, method, params) = call(6, "task_result_add_from_chat", json!({"messageId": 335}));
    assert_eq!(ok(&client.request(id, method, params).await)["taskId"], 51);

    let (id, method, params) = call(7, "task_result_delete", json!({"id": result_id}));
    assert_eq!(
        ok(&client.request(id, method, params).await),
        json!({"id": result_id, "deleted": true})
    );

    // A bad argument is a tool error; an unknown session is 404.
    let (id, method, params) = call(8, "task_result_add", json!({"taskId": 51}));
    let bad = client.request(id, method, params).await;
    assert_eq!(bad["result"]["isError"], json!(true), "{bad}");
    let unknown = http()
        .post(format!("{}/message?sessionId=no-such-session", server.base))
        .bearer_auth(TOKEN)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn two_streams_with_the_same_request_ids_get_their_own_replies() {
    let server = spawn_http(&["--sandbox"], &[]).await;
    let mut a = LegacyClient::open(&server.base, None).await;
    let mut b = LegacyClient::open(&server.base, None).await;
    assert_ne!(a.endpoint, b.endpoint);
    a.handshake().await;
    b.handshake().await;
    // Both POST before either reads, with the same JSON-RPC id.
    for (client, text) in [(&a, "from stream A"), (&b, "from stream B")] {
        let status = client
            .post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                         "params": {"name": "task_result_add", "arguments": {"taskId": 51, "text": text}}}))
            .await;
        assert_eq!(status, 202);
    }
    assert_eq!(ok(&a.reply(2).await)["text"], "from stream A");
    assert_eq!(ok(&b.reply(2).await)["text"], "from stream B");
}

#[tokio::test]
async fn sigterm_delivers_the_slow_reply_then_closes_the_stream() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    sandbox.inject(
        "tasks.task.result.add",
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    let mut gate = PortalGate::start(&sandbox, "tasks.task.result.add").await;
    let mut server = spawn_http(&[], &[("BITRIX24_WEBHOOK_URL", gate.webhook_url.as_str())]).await;
    let mut client = LegacyClient::open(&server.base, None).await;
    client.handshake().await;
    let status = client
        .post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                     "params": {"name": "task_result_add", "arguments": {"taskId": 51, "text": "slow over SSE"}}}))
        .await;
    assert_eq!(status, 202);
    // The call is in flight once the portal has the request.
    gate.reached().await;
    server.sigterm().await;

    assert_eq!(ok(&client.reply(2).await)["text"], "slow over SSE");
    // Then the server closes the stream and exits cleanly.
    while let Some(event) = client.next_event().await {
        assert_eq!(event.event, "message", "{event:?}");
    }
    let status = server.wait().await;
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
}

#[tokio::test]
async fn malformed_message_bodies_get_json_rpc_errors_like_stdio_and_mcp() {
    let server = spawn_http(&["--sandbox"], &[]).await;
    let mut client = LegacyClient::open(&server.base, None).await;
    client.handshake().await;
    let url = format!("{}{}", server.base, client.endpoint);
    for (body, code, id) in [
        // Truncated JSON: a parse error, no id.
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"pi"#,
            -32700,
            Value::Null,
        ),
        // Readable request with a wrong version: its id comes back.
        (
            r#"{"jsonrpc":"1.0","id":6,"method":"ping"}"#,
            -32600,
            json!(6),
        ),
        // Bad params of a method we serve.
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":5}}"#,
            -32602,
            json!(7),
        ),
        ("", -32700, Value::Null),
    ] {
        let answer = http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{body}");
        assert!(
            answer.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let error: Value = answer.json().await.unwrap();
        assert_eq!(error["jsonrpc"], "2.0", "{error}");
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert_eq!(
            error.get("id").cloned().unwrap_or(Value::Null),
            id,
            "{error}"
        );
    }
    // The session lives on.
    let pong = client.request(9, "ping", json!({})).await;
    assert_eq!(pong["id"], 9, "{pong}");
}
