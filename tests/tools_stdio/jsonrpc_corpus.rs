//! A malformed JSON-RPC corpus over stdio: the server answers what deserves an answer
//! (with the request's id when it can be read), ignores notifications and responses,
//! stays alive, and the next valid request works.

use crate::support::raw;

use bitrix24_task_results_mcp::tools::REGISTRY;
use raw::{RawSession, assert_no_panic, assert_stdout_is_jsonrpc, count_id_less};
use serde_json::{Value, json};

/// (line, expected answer): `Some((id, code))` for an error with that id (`Null` = no
/// id), `None` for no answer at all.
fn corpus() -> Vec<(String, Option<(Value, i64)>)> {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    vec![
        // Not JSON, or truncated: a parse error without id.
        (r#"{"jsonrpc":"2.0","id":"trunc","method":"ping""#.into(), Some((Value::Null, -32700))),
        ("hello world".into(), Some((Value::Null, -32700))),
        ("\u{1}\u{2}binary".into(), Some((Value::Null, -32700))),
        (r#"{"jsonrpc":"2.0","id":"esc","method":"ping","params":{"x":"\uZZZZ"}}"#.into(), Some((Value::Null, -32700))),
        // Batches: each request in one gets its own error.
        (r#"[{"jsonrpc":"2.0","id":"b1","method":"ping"}]"#.into(), Some((json!("b1"), -32600))),
        ("[]".into(), Some((Value::Null, -32600))),
        // Wrong or missing jsonrpc: answered to the id.
        (r#"{"jsonrpc":"1.0","id":"v1","method":"ping"}"#.into(), Some((json!("v1"), -32600))),
        (r#"{"id":"nov","method":"ping"}"#.into(), Some((json!("nov"), -32600))),
        (r#"{"jsonrpc":2,"id":"v2num","method":"ping"}"#.into(), Some((json!("v2num"), -32600))),
        // Ids MCP does not allow: an error without id.
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#.into(), Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#.into(), Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#.into(), Some((Value::Null, -32600))),
        (r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#.into(), Some((Value::Null, -32600))),
        // Odd but valid ids are served.
        (r#"{"jsonrpc":"2.0","id":-7,"method":"ping"}"#.into(), Some((json!(-7), 0))),
        (r#"{"jsonrpc":"2.0","id":"","method":"ping"}"#.into(), Some((json!(""), 0))),
        (r#"{"jsonrpc":"2.0","id":"ü🙂\n","method":"ping"}"#.into(), Some((json!("ü🙂\n"), 0))),
        // A notification method sent with an id is a request for an unknown method.
        (r#"{"jsonrpc":"2.0","id":"nid","method":"notifications/initialized"}"#.into(), Some((json!("nid"), -32601))),
        // Unknown methods: an error for a request, silence for a notification.
        (r#"{"jsonrpc":"2.0","id":"unk","method":"foo/bar"}"#.into(), Some((json!("unk"), -32601))),
        (r#"{"jsonrpc":"2.0","method":"foo/bar"}"#.into(), None),
        (r#"{"jsonrpc":"2.0","method":"notifications/whatever","params":[1]}"#.into(), None),
        (r#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#.into(), None),
        // Responses to nothing are not answered.
        (r#"{"jsonrpc":"2.0","id":"resp","result":{}}"#.into(), None),
        (r#"{"jsonrpc":"2.0","id":"err","error":{"code":1,"message":"x"}}"#.into(), None),
        // Missing or mistyped method, bad params of a served method.
        (r#"{"jsonrpc":"2.0","id":"nomethod"}"#.into(), Some((json!("nomethod"), -32600))),
        (r#"{"jsonrpc":"2.0","id":"mnum","method":5}"#.into(), Some((json!("mnum"), -32600))),
        (r#"{"jsonrpc":"2.0","id":"plist","method":"tools/list","params":[1]}"#.into(), Some((json!("plist"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"cargs","method":"tools/call","params":{"name":"task_result_list","arguments":[51]}}"#.into(), Some((json!("cargs"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"cstr","method":"tools/call","params":{"name":"task_result_list","arguments":"taskId=51"}}"#.into(), Some((json!("cstr"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"cnoname","method":"tools/call","params":{"arguments":{}}}"#.into(), Some((json!("cnoname"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"cnone","method":"tools/call"}"#.into(), Some((json!("cnone"), -32602))),
        (r#"{"jsonrpc":"2.0","id":"ctool","method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}"#.into(), Some((json!("ctool"), -32602))),
        // Nesting past serde_json's limit: answered to the id.
        (
            format!(r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{{"name":"task_result_list","arguments":{{"taskId":{}}}}}}}"#, deep(300)),
            Some((json!("deep"), -32600)),
        ),
        // A UTF-8 BOM and CRLF are tolerated.
        ("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":\"bom\",\"method\":\"ping\"}\r".into(), Some((json!("bom"), 0))),
        // Blank lines are skipped.
        ("".into(), None),
        ("   ".into(), None),
    ]
}

async fn session() -> RawSession {
    let mut s = RawSession::start(&["--sandbox"], &[("RUST_LOG", "debug")]);
    s.initialize().await;
    s
}

#[tokio::test]
async fn malformed_messages_are_answered_or_ignored_and_the_server_lives_on() {
    let mut s = session().await;
    let mut id_less_expected = 0;
    for (i, (line, expected)) in corpus().into_iter().enumerate() {
        s.line(&line).await;
        match expected {
            // Silence can only be checked at the end: see the count below.
            None => {}
            Some((Value::Null, code)) => {
                id_less_expected += 1;
                let m = s.next_id_less().await;
                assert_eq!(m["error"]["code"], code, "line {i} `{line:.80}`: {m}");
            }
            Some((id, code)) => {
                let r = s.response(&id).await;
                if code == 0 {
                    assert_eq!(r["result"], json!({}), "line {i}: {r}");
                } else {
                    assert_eq!(r["error"]["code"], code, "line {i} `{line:.80}`: {r}");
                    assert!(
                        r["error"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty()),
                        "{r}"
                    );
                }
            }
        }
        // The server lives on and the next valid request works.
        s.assert_alive(&format!("after-{i}")).await;
    }
    let (status, lines, stderr) = s.finish().await;
    assert!(status.success(), "{status:?}");
    // Exactly the expected id-less answers: the lines that deserve none got none.
    assert_eq!(count_id_less(&lines), id_less_expected, "{lines:#?}");
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
}

#[tokio::test]
async fn a_lone_surrogate_in_text_is_replaced_not_dropped() {
    let mut s = session().await;
    s.line(r#"{"jsonrpc":"2.0","id":"sur","method":"tools/call","params":{"name":"task_result_add","arguments":{"taskId":51,"text":"half \ud800 a pair"}}}"#).await;
    let r = s.response(&json!("sur")).await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert_eq!(
        r["result"]["structuredContent"]["text"],
        "half \u{fffd} a pair"
    );
    let (_, lines, stderr) = s.finish().await;
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
}

#[tokio::test]
async fn a_10_mib_message_is_refused_with_an_is_error_and_the_next_call_works() {
    let mut s = session().await;
    let text = "x".repeat(10 * 1024 * 1024);
    let r = s
        .call(
            json!("big"),
            "task_result_add",
            json!({"taskId": 51, "text": text}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{:.300}", r.to_string());
    let msg = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        msg.contains("`text`") && msg.contains("30000"),
        "{msg:.300}"
    );
    assert!(
        msg.len() < 2_000,
        "the error echoes the text: {} bytes",
        msg.len()
    );
    // Over rmcp's 16 MiB line cap: dropped with an id-less error, and the session goes on.
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":"huge","method":"ping","params":{{"p":"{}"}}}}"#,
        "y".repeat(17 * 1024 * 1024)
    );
    s.line(&huge).await;
    let m = s.next_id_less().await;
    assert_eq!(m["error"]["code"], -32600, "{m}");
    s.assert_alive("after-huge").await;
    let r = s
        .call(json!("next"), "task_result_list", json!({"taskId": 51}))
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    let (_, lines, stderr) = s.finish().await;
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
}

#[tokio::test]
async fn thousands_of_messages_in_one_burst_are_all_answered() {
    let mut s = session().await;
    const N: usize = 3000;
    let mut burst = String::new();
    for i in 0..N {
        let msg = match i % 4 {
            0 => json!({"jsonrpc": "2.0", "id": i, "method": "ping"}),
            1 => json!({"jsonrpc": "2.0", "id": i, "method": "tools/list"}),
            2 => {
                json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "task_result_delete", "arguments": {"id": -1}}})
            }
            _ => json!({"jsonrpc": "2.0", "id": i, "method": "no/such"}),
        };
        burst.push_str(&msg.to_string());
        burst.push('\n');
        // Malformed lines mixed in.
        if i % 100 == 0 {
            burst.push_str("not json\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"}\n");
        }
    }
    s.write(burst.as_bytes()).await;
    for i in 0..N {
        let r = s.response(&json!(i)).await;
        match i % 4 {
            0 => assert_eq!(r["result"], json!({}), "{r}"),
            1 => assert_eq!(
                r["result"]["tools"].as_array().map(Vec::len),
                Some(REGISTRY.len()),
                "{r}"
            ),
            2 => assert_eq!(r["result"]["isError"], true, "{r}"),
            _ => assert_eq!(r["error"]["code"], -32601, "{r}"),
        }
    }
    s.assert_alive("after-burst").await;
    let (status, lines, stderr) = s.finish().await;
    assert!(status.success());
    // One parse error per "not json" line; none for the odd notifications.
    assert_eq!(count_id_less(&lines), N / 100);
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
}
