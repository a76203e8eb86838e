//! The adversarial suite over streamable HTTP (`/mcp`): the malformed JSON-RPC corpus in
//! stateless and stateful mode, a 10 MiB message, a burst of requests, and the bearer
//! token kept out of every output at trace level.

use crate::support::{common, http_support};

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use http_support::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// POSTs `body` to /mcp as a client would; returns the status and the JSON-RPC messages
/// of the answer (a JSON body, or the `data:` lines of an event stream).
async fn post(url: &str, session: Option<&str>, body: Vec<u8>) -> (u16, Vec<Value>, String) {
    // One client (and connection pool) for the whole file: building one per request
    // would dominate the burst test.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let mut request = CLIENT
        .get_or_init(http)
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    let response = request.send().await.expect("an HTTP answer");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let messages = match serde_json::from_str::<Value>(&text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .collect(),
    };
    (status, messages, text)
}

/// Opens a stateful session: initialize + notifications/initialized.
async fn open_session(url: &str) -> String {
    let response = http()
        .post(url)
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text().await;
    let (status, _, text) = post(
        url,
        Some(&session),
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    session
}

/// (body, HTTP status, expected message: `Some((id, code))`, id `Null` = no id, code 0 =
/// a result; `None` = no message).
type Case = (String, u16, Option<(Value, i64)>);

fn corpus() -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    vec![
        (r#"{"jsonrpc":"2.0","id":"trunc","method":"ping""#.into(), 400, Some((Value::Null, -32700))),
        ("hello world".into(), 400, Some((Value::Null, -32700))),
        ("".into(), 400, Some((Value::Null, -32700))),
        (r#"[{"jsonrpc":"2.0","id":"b1","method":"ping"}]"#.into(), 400, Some((json!("b1"), -32600))),
        ("[]".into(), 400, Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"1.0","id":"v1","method":"ping"}"#.into(), 400, Some((json!("v1"), -32600))),
        (r#"{"id":"nov","method":"ping"}"#.into(), 400, Some((json!("nov"), -32600))),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.into(), 400, Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.into(), 400, Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.into(), 400, Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":-7,"method":"ping"}"#.into(), 200, Some((json!(-7), 0))),
        (r#"{"jsonrpc":"2.0","id":"","method":"ping"}"#.into(), 200, Some((json!(""), 0))),
        (r#"{"jsonrpc":"2.0","id":"nid","method":"notifications/initialized"}"#.into(), 200, Some((json!("nid"), -32601))),
        (r#"{"jsonrpc":"2.0","id":"unk","method":"foo/bar"}"#.into(), 200, Some((json!("unk"), -32601))),
        (r#"{"jsonrpc":"2.0","method":"foo/bar"}"#.into(), 202, None),
        (r#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#.into(), 400, Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":"nomethod"}"#.into(), 400, Some((json!("nomethod"), -32600))),
        (r#"{"jsonrpc":"2.0","id":"plist","method":"tools/list","params":[1]}"#.into(), 400, Some((json!("plist"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"cargs","method":"tools/call","params":{"name":"task_result_list","arguments":[51]}}"#.into(), 400, Some((json!("cargs"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"cnone","method":"tools/call"}"#.into(), 400, Some((json!("cnone"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"ctool","method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}"#.into(), 200, Some((json!("ctool"), -32602))),
        (
            format!(r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{{"name":"task_result_list","arguments":{{"taskId":{deep}}}}}}}"#),
            400,
            Some((json!("deep"), -32600)),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"sur","method":"tools/call","params":{"name":"task_result_add","arguments":{"taskId":51,"text":"half \ud800 pair"}}}"#.into(),
            200,
            Some((json!("sur"), 0)),
        ),
    ]
}

async fn run_corpus(url: &str, session: Option<&str>) {
    for (i, (body, status, expected)) in corpus().into_iter().enumerate() {
        let (got, messages, text) = post(url, session, body.clone().into_bytes()).await;
        assert_eq!(got, status, "case {i} `{body:.80}`: {text:.300}");
        match expected {
            None => assert!(messages.is_empty(), "case {i}: {text:.300}"),
            Some((id, code)) => {
                assert_eq!(messages.len(), 1, "case {i} `{body:.80}`: {text:.300}");
                let m = &messages[0];
                assert_eq!(m["jsonrpc"], "2.0", "case {i}: {m}");
                assert_eq!(
                    m.get("id").cloned().unwrap_or(Value::Null),
                    id,
                    "case {i}: {m}"
                );
                if code == 0 {
                    assert!(m.get("result").is_some(), "case {i}: {m}");
                    assert_ne!(m["result"]["isError"], true, "case {i}: {m}");
                } else {
                    assert_eq!(m["error"]["code"], code, "case {i} `{body:.80}`: {m}");
                }
            }
        }
        // The next valid request still works.
        let (ok, messages, text) = post(
            url,
            session,
            json!({"jsonrpc":"2.0","id":format!("next-{i}"),"method":"ping"})
                .to_string()
                .into_bytes(),
        )
        .await;
        assert_eq!(ok, 200, "after case {i}: {text}");
        assert_eq!(messages[0]["result"], json!({}), "after case {i}: {text}");
    }
}

#[tokio::test]
async fn malformed_corpus_over_stateless_http() {
    let server = spawn_http(&["--sandbox", "--stateless"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    run_corpus(&server.mcp_url(), None).await;
    let stderr = server.stderr();
    assert!(!stderr.contains("panic at "), "{stderr}");
}

#[tokio::test]
async fn malformed_corpus_over_stateful_http() {
    let server = spawn_http(&["--sandbox"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let session = open_session(&server.mcp_url()).await;
    run_corpus(&server.mcp_url(), Some(&session)).await;
    let stderr = server.stderr();
    assert!(!stderr.contains("panic at "), "{stderr}");
}

#[tokio::test]
async fn a_10_mib_message_is_refused_and_the_server_lives_on() {
    let server = spawn_http(&["--sandbox", "--stateless"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let text = "x".repeat(10 * 1024 * 1024);
    let body = json!({"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"task_result_add","arguments":{"taskId":51,"text":text}}});
    // The server answers 413 as soon as it sees Content-Length and closes; a client still
    // sending may see that answer or a reset connection. Either way nothing was run.
    let answer = http()
        .post(server.mcp_url())
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string())
        .send()
        .await;
    if let Ok(r) = answer {
        assert_eq!(r.status(), 413);
    }
    let (status, messages, text) = post(
        &server.mcp_url(),
        None,
        br#"{"jsonrpc":"2.0","id":"after","method":"tools/call","params":{"name":"task_result_list","arguments":{"taskId":51}}}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(messages[0]["result"]["isError"], false, "{text}");
}

#[tokio::test]
async fn thousands_of_requests_in_a_burst_are_all_answered() {
    let server = spawn_http(&["--sandbox", "--stateless"], &[("MCP_AUTH_TOKEN", TOKEN)]).await;
    let url = server.mcp_url();
    const N: usize = 2000;
    let answers: Vec<(usize, u16, Vec<Value>)> = futures::stream::iter(0..N)
        .map(|i| {
            let url = url.clone();
            async move {
                let body = match i % 4 {
                    0 => json!({"jsonrpc":"2.0","id":i,"method":"ping"}).to_string(),
                    1 => json!({"jsonrpc":"2.0","id":i,"method":"tools/list"}).to_string(),
                    2 => json!({"jsonrpc":"2.0","id":i,"method":"tools/call","params":{"name":"task_result_delete","arguments":{"id":-1}}}).to_string(),
                    _ => "{not json".to_string(),
                };
                let (status, messages, _) = post(&url, None, body.into_bytes()).await;
                (i, status, messages)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(answers.len(), N);
    for (i, status, messages) in answers {
        let m = &messages[0];
        match i % 4 {
            0 => assert_eq!((status, m["result"].clone()), (200, json!({})), "{i}: {m}"),
            1 => assert_eq!(status, 200, "{i}: {m}"),
            2 => assert_eq!(
                (status, m["result"]["isError"].clone()),
                (200, json!(true)),
                "{i}: {m}"
            ),
            _ => assert_eq!(
                (status, m["error"]["code"].clone()),
                (400, json!(-32700)),
                "{i}: {m}"
            ),
        }
        if i % 4 != 3 {
            assert_eq!(m["id"], i, "{m}");
        }
    }
}

fn capture<R: tokio::io::AsyncRead + Unpin + Send + 'static>(mut pipe: R) -> Arc<Mutex<String>> {
    let sink = Arc::new(Mutex::new(String::new()));
    let out = sink.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    sink
}

#[tokio::test]
async fn bearer_token_and_oauth_token_never_leak_over_http_at_trace_level() {
    use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
    const ACCESS: &str = "zq7oauthaccess0http9x";
    let sandbox = Sandbox::start(SandboxOptions {
        access_token: Some(ACCESS.into()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let portal = sandbox.base_url();
    let mut cmd = common::command(
        &["--transport", "http", "--listen", "127.0.0.1:0"],
        &[
            ("BITRIX24_PORTAL_URL", portal.as_str()),
            ("BITRIX24_ACCESS_TOKEN", ACCESS),
            ("MCP_AUTH_TOKEN", TOKEN),
            ("RUST_LOG", "trace"),
        ],
    );
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stdout = capture(child.stdout.take().unwrap());
    let mut server = HttpServer::listening(child).await;
    let url = server.mcp_url();

    let mut seen = Vec::new();
    // Wrong and missing tokens: 401, and the answer never holds the real one.
    for auth in [Some("wrong-token-value"), None] {
        let mut r = http()
            .post(&url)
            .header("content-type", "application/json")
            .body(initialize_body().to_string());
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let headers = format!("{:?}", r.headers());
        seen.push(format!("{headers} {}", r.text().await.unwrap()));
    }
    let client = connect(&url, Some(TOKEN))
        .await
        .expect("connect with the token");
    for (tool, args) in [
        (
            "task_result_add",
            json!({"taskId": 51, "text": "over http"}),
        ),
        ("task_result_list", json!({"taskId": 51})),
        ("task_result_add", json!({"taskId": "bad"})),
        ("task_result_delete", json!({"id": 424242})),
    ] {
        seen.push(serde_json::to_string(&call(&client, tool, args).await).unwrap());
    }
    sandbox.inject("tasks.task.result.add", Fault::ExpiredToken, 1);
    seen.push(
        serde_json::to_string(
            &call(
                &client,
                "task_result_add",
                json!({"taskId": 51, "text": "x"}),
            )
            .await,
        )
        .unwrap(),
    );
    let _ = client.cancel().await;
    let _ = server.child.start_kill();
    let _ = server.child.wait().await;
    seen.push(stdout.lock().unwrap().clone());
    let stderr = server.stderr();
    assert!(stderr.contains("TRACE"), "trace logging was on");
    seen.push(stderr);
    for s in &seen {
        for secret in [TOKEN, ACCESS] {
            assert!(!s.contains(secret), "a secret leaked: {s:.2000}");
        }
    }
}
