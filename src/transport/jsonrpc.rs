//! The one JSON-RPC validator of every transport (stdio lines, `/mcp` and `/message`
//! bodies): a message is handed to rmcp only when rmcp can serve it; everything else gets
//! the answer JSON-RPC 2.0 asks for. (Over 400 lines because its table of malformed
//! messages, the unit tests, sits beside the rules it checks.)
//!
//! rmcp's own stdio transport drops what it cannot parse without a word: invalid JSON, a
//! string with a lone UTF-16 surrogate escape (`"\ud800"`, which JavaScript clients
//! produce and accept), nesting deeper than serde_json's 128 levels; and it answers a
//! request it can read but not accept (wrong `jsonrpc`, bad `params`, a batch) with an
//! error that has no `id`, or with "method not found" for `tools/call`. Either way the
//! client waits for an answer that never comes. This transport keeps rmcp's behaviour for
//! every valid message and answers the rest as JSON-RPC 2.0 asks:
//!
//! - not JSON: `-32700 Parse error` (no `id`: MCP's schema allows none, not `null`);
//! - lone surrogate escapes: replaced by U+FFFD (as a JavaScript client's own UTF-8
//!   encoding would) and the message is served;
//! - readable request, unusable message: `-32600` (or `-32602` for bad params of a
//!   method we serve) carrying the request's `id`;
//! - notifications and responses are never answered, whatever their shape.

use rmcp::RoleServer;
use rmcp::model::{ClientRequest, JsonRpcMessage};
use rmcp::service::RxJsonRpcMessage;
use serde_json::{Map, Value, json};

pub(super) const PARSE_ERROR: i64 = -32700;
pub(super) const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// Methods this server serves, whose bad `params` get `-32602` instead of rmcp's
/// "method not found".
const SERVED: [&str; 5] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "server/discover",
];

/// What to do with one line.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict<M> {
    /// A message for rmcp.
    Serve(M),
    /// Nothing to answer (empty line, a notification or response of any shape).
    Ignore,
    /// Answer with these errors instead, one line each.
    Answer(Vec<Value>),
}

/// What an HTTP transport should do with one POSTed JSON-RPC body.
#[derive(Debug)]
pub enum BodyCheck {
    /// A valid message, parsed once here for whoever can take it parsed.
    Pass {
        /// The message as rmcp reads it.
        message: Box<RxJsonRpcMessage<RoleServer>>,
        /// The body with its lone surrogate escapes replaced, when it had any: a
        /// transport that hands bytes on must hand on these.
        repaired: Option<Vec<u8>>,
    },
    /// Refuse with this JSON-RPC error (HTTP 400).
    Refuse(Value),
}

/// The same judgement as for a stdio line, for one HTTP body: rmcp's streamable HTTP
/// service answers every body it cannot parse with `415` and a plain-text message, and
/// `tools/call` with bad params with "method not found".
pub fn check_body(body: &[u8]) -> BodyCheck {
    if body.iter().all(u8::is_ascii_whitespace) {
        return BodyCheck::Refuse(error(None, PARSE_ERROR, "Parse error: the body is empty"));
    }
    match judge_repairing(body) {
        (Verdict::Serve(message), repaired) => BodyCheck::Pass {
            message: Box::new(message),
            repaired,
        },
        // MCP has no batches, so one HTTP answer carries one message: the first error.
        (Verdict::Answer(mut replies), _) => BodyCheck::Refuse(replies.swap_remove(0)),
        // A malformed notification or response: HTTP says 400, with an id-less error.
        (Verdict::Ignore, _) => BodyCheck::Refuse(error(
            None,
            INVALID_REQUEST,
            "a malformed notification or response",
        )),
    }
}

/// Decides what one line (newline included) is. A valid message is deserialized once,
/// straight into rmcp's type; only a refused one is read again to explain why.
pub(super) fn judge(raw: &[u8]) -> Verdict<RxJsonRpcMessage<RoleServer>> {
    judge_repairing(raw).0
}

/// [`judge`], with the repaired bytes when lone surrogates were replaced.
fn judge_repairing(raw: &[u8]) -> (Verdict<RxJsonRpcMessage<RoleServer>>, Option<Vec<u8>>) {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return (Verdict::Ignore, None);
    }
    match serde_json::from_slice::<RxJsonRpcMessage<RoleServer>>(line) {
        Ok(message) => return (check_served(message), None),
        Err(e) if e.is_syntax() || e.is_eof() => {}
        Err(_) => return (explain(line), None),
    }
    if let Some(repaired) = replace_lone_surrogates(line) {
        tracing::debug!("replaced lone surrogate escapes with U+FFFD");
        let verdict = judge(&repaired);
        return (verdict, Some(repaired));
    }
    (judge_unparsed(line), None)
}

/// A line serde_json could not read as a message for a reason of syntax.
fn judge_unparsed(line: &[u8]) -> Verdict<RxJsonRpcMessage<RoleServer>> {
    match serde_json::from_slice::<Value>(line) {
        // Valid JSON that serde_json still refused as a message: nesting over its limit.
        Ok(_) => explain(line),
        Err(e) if e.to_string().contains("recursion limit") => {
            // The id sits at the top level; read it without descending.
            let id = serde_json::from_slice::<TopLevel>(line)
                .ok()
                .and_then(|t| t.id)
                .and_then(|id| usable_id(&id));
            if id.is_none() && is_notification_or_response(line) {
                return Verdict::Ignore;
            }
            answer(error(
                id,
                INVALID_REQUEST,
                "the message is nested more than 128 levels deep",
            ))
        }
        Err(e) => answer(error(None, PARSE_ERROR, &format!("Parse error: {e}"))),
    }
}

/// Top-level fields only; everything below is skipped.
#[derive(serde::Deserialize)]
struct TopLevel {
    #[serde(default)]
    id: Option<Value>,
}

fn is_notification_or_response(line: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Shape {
        id: Option<serde::de::IgnoredAny>,
        method: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Shape>(line).is_ok_and(|s| s.id.is_none() || s.method.is_none())
}

/// rmcp accepts a request for a method it serves with unreadable params as a custom
/// request, then says "method not found"; answer "invalid params" instead.
fn check_served(message: RxJsonRpcMessage<RoleServer>) -> Verdict<RxJsonRpcMessage<RoleServer>> {
    if let JsonRpcMessage::Request(request) = &message
        && let ClientRequest::CustomRequest(custom) = &request.request
        && SERVED.contains(&custom.method.as_str())
    {
        let id = serde_json::to_value(&request.id).ok();
        let detail = params_problem(&custom.method, custom.params.clone());
        return answer(error(
            id,
            INVALID_PARAMS,
            &format!("invalid params for `{}`: {detail}", custom.method),
        ));
    }
    Verdict::Serve(message)
}

/// Why `params` do not fit `method`, in serde's words.
fn params_problem(method: &str, params: Option<Value>) -> String {
    let params = params.unwrap_or(Value::Null);
    let outcome = match method {
        "tools/call" => {
            serde_json::from_value::<rmcp::model::CallToolRequestParams>(params).map(drop)
        }
        "initialize" => {
            serde_json::from_value::<rmcp::model::InitializeRequestParams>(params).map(drop)
        }
        _ => serde_json::from_value::<Option<Map<String, Value>>>(params).map(drop),
    };
    match outcome {
        Err(e) => e.to_string(),
        Ok(()) => "they do not match the method's parameters".into(),
    }
}

/// Valid JSON that is not a usable message: say what is wrong, to the right id.
fn explain(line: &[u8]) -> Verdict<RxJsonRpcMessage<RoleServer>> {
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(v) => v,
        Err(_) => {
            return answer(error(None, INVALID_REQUEST, "Invalid request"));
        }
    };
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(items) => return batch(items),
        _ => {
            return answer(error(
                None,
                INVALID_REQUEST,
                "a JSON-RPC message must be a JSON object",
            ));
        }
    };
    let method = obj.get("method");
    let raw_id = obj.get("id");
    // Never answer a notification or a response, whatever else is wrong with them.
    if raw_id.is_none()
        || (method.is_none() && (obj.contains_key("result") || obj.contains_key("error")))
    {
        return Verdict::Ignore;
    }
    let id = raw_id.and_then(usable_id);
    let (code, problem) = if obj.get("jsonrpc") != Some(&json!("2.0")) {
        (INVALID_REQUEST, "`jsonrpc` must be \"2.0\"".to_string())
    } else if id.is_none() {
        (
            INVALID_REQUEST,
            "`id` must be a string or an integer".to_string(),
        )
    } else {
        match method {
            Some(Value::String(m)) if SERVED.contains(&m.as_str()) => (
                INVALID_PARAMS,
                format!(
                    "invalid params for `{m}`: {}",
                    params_problem(m, obj.get("params").cloned())
                ),
            ),
            Some(Value::String(m)) => (
                INVALID_REQUEST,
                format!("the request for `{m}` is malformed"),
            ),
            _ => (INVALID_REQUEST, "`method` must be a string".to_string()),
        }
    };
    answer(error(id, code, &problem))
}

/// MCP (2025-06-18 on) has no batches; each request in one is answered with an error.
fn batch(items: Vec<Value>) -> Verdict<RxJsonRpcMessage<RoleServer>> {
    const WHY: &str = "JSON-RPC batches are not supported by MCP; send each message separately";
    let answers: Vec<Value> = items
        .iter()
        .filter(|i| i.get("method").is_some())
        .filter_map(|i| i.get("id").and_then(usable_id))
        .map(|id| error(Some(id), INVALID_REQUEST, WHY))
        .collect();
    if answers.is_empty() {
        answer(error(None, INVALID_REQUEST, WHY))
    } else {
        // Not as a JSON-RPC batch reply (an array), which MCP does not have either.
        Verdict::Answer(answers)
    }
}

/// An id MCP allows: a string or an integer that fits i64 (rmcp's number type).
fn usable_id(id: &Value) -> Option<Value> {
    match id {
        Value::String(_) => Some(id.clone()),
        Value::Number(n) if n.is_i64() => Some(id.clone()),
        _ => None,
    }
}

pub(super) fn answer<M>(reply: Value) -> Verdict<M> {
    Verdict::Answer(vec![reply])
}

pub(super) fn error(id: Option<Value>, code: i64, message: &str) -> Value {
    let mut reply = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}});
    if let Some(id) = id {
        reply["id"] = id;
    }
    reply
}

/// Replaces `\uXXXX` escapes of unpaired UTF-16 surrogates inside JSON strings with
/// `\ufffd` (same length); `None` when there are none.
fn replace_lone_surrogates(line: &[u8]) -> Option<Vec<u8>> {
    fn unit_at(b: &[u8], i: usize) -> Option<u16> {
        if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);
    let mut out = line.to_vec();
    let mut changed = false;
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        match (in_string, line[i]) {
            (false, b'"') | (true, b'"') => in_string = !in_string,
            (true, b'\\') => match unit_at(line, i) {
                Some(u) if is_high(u) && unit_at(line, i + 6).is_some_and(is_low) => {
                    i += 12;
                    continue;
                }
                Some(u) if is_high(u) || is_low(u) => {
                    out[i..i + 6].copy_from_slice(b"\\ufffd");
                    changed = true;
                    i += 6;
                    continue;
                }
                // Any other escape: skip the backslash and the escaped character.
                _ => {
                    i += 2;
                    continue;
                }
            },
            _ => {}
        }
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(line: &str) -> Vec<Value> {
        match judge(format!("{line}\n").as_bytes()) {
            Verdict::Answer(v) => v,
            Verdict::Serve(m) => panic!("served {line}: {m:?}"),
            Verdict::Ignore => panic!("ignored {line}"),
        }
    }

    fn answer(line: &str) -> Value {
        let mut all = answers(line);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn served(line: &str) -> bool {
        matches!(judge(line.as_bytes()), Verdict::Serve(_))
    }

    fn ignored(line: &str) -> bool {
        matches!(judge(line.as_bytes()), Verdict::Ignore)
    }

    #[test]
    fn valid_messages_pass_through() {
        assert!(served(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
        assert!(served(
            "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"tools/list\"}\r\n"
        ));
        assert!(served(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"a":[1]}}}"#
        ));
        assert!(served(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ));
        assert!(
            served(r#"{"jsonrpc":"2.0","id":3,"method":"no/such"}"#),
            "rmcp answers -32601"
        );
        assert!(ignored("   \n"));
    }

    #[test]
    fn non_json_gets_a_parse_error_without_id() {
        for line in [
            "hello",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
            "\u{0}\u{1}",
            r#"{"a":"\uZZZZ"}"#,
        ] {
            let a = answer(line);
            assert_eq!(a["error"]["code"], PARSE_ERROR, "{line}: {a}");
            assert!(a.get("id").is_none(), "{a}");
        }
    }

    #[test]
    fn lone_surrogates_are_replaced_and_the_message_served() {
        let line = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"text":"a\ud800b\udc00c\\ud800\ud83d\ude00"}}}"#;
        let Verdict::Serve(m) = judge(line.as_bytes()) else {
            panic!("not served");
        };
        let text = serde_json::to_value(&m).unwrap()["params"]["arguments"]["text"].clone();
        assert_eq!(text, "a\u{fffd}b\u{fffd}c\\ud800\u{1f600}");
        assert_eq!(
            replace_lone_surrogates(br#"{"a":"\ud83d\ude00 \\udc00"}"#),
            None
        );
    }

    #[test]
    fn readable_requests_get_an_error_with_their_id() {
        let a = answer(r#"{"jsonrpc":"1.0","id":"v1","method":"ping"}"#);
        assert_eq!(
            (a["id"].clone(), a["error"]["code"].clone()),
            (json!("v1"), json!(INVALID_REQUEST))
        );
        let a = answer(r#"{"id":7,"method":"ping"}"#);
        assert_eq!(a["id"], 7);
        let a = answer(r#"{"jsonrpc":"2.0","id":"p","method":"tools/list","params":[1]}"#);
        assert_eq!(
            (a["id"].clone(), a["error"]["code"].clone()),
            (json!("p"), json!(INVALID_PARAMS))
        );
        let a = answer(
            r#"{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"t","arguments":[51]}}"#,
        );
        assert_eq!(
            (a["id"].clone(), a["error"]["code"].clone()),
            (json!("c"), json!(INVALID_PARAMS))
        );
        assert!(
            a["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tools/call"),
            "{a}"
        );
        let a = answer(r#"{"jsonrpc":"2.0","id":"m","method":5}"#);
        assert_eq!(a["id"], "m");
        let a = answer(r#"{"jsonrpc":"2.0","id":"nomethod"}"#);
        assert_eq!(a["id"], "nomethod");
    }

    #[test]
    fn unusable_ids_get_an_error_without_id() {
        for id in [
            "null",
            "1.5",
            "true",
            "{}",
            "[1]",
            "1e30",
            "18446744073709551615",
        ] {
            let a = answer(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
            assert_eq!(a["error"]["code"], INVALID_REQUEST, "{id}: {a}");
            assert!(a.get("id").is_none(), "{id}: {a}");
        }
    }

    #[test]
    fn notifications_and_responses_are_never_answered() {
        assert!(ignored(
            r#"{"jsonrpc":"1.0","method":"notifications/initialized"}"#
        ));
        assert!(ignored(r#"{"jsonrpc":"2.0","method":5}"#));
        assert!(
            ignored(r#"{"jsonrpc":"2.0","id":"r","result":{}}"#)
                || served(r#"{"jsonrpc":"2.0","id":"r","result":{}}"#)
        );
        assert!(ignored(r#"{"jsonrpc":"2.0","id":{},"error":"x"}"#));
        let deep_notification = format!(
            r#"{{"jsonrpc":"2.0","method":"x","params":{}{}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        assert!(ignored(&deep_notification));
    }

    #[test]
    fn batches_answer_each_request() {
        let a = answers(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"b","method":"ping"}]"#,
        );
        let ids: Vec<Value> = a.iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [json!(1), json!("b")]);
        let a = answer("[]");
        assert_eq!(a["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn too_deep_messages_are_answered_with_their_id() {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{{"name":"t","arguments":{{"x":{}{}}}}}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        let a = answer(&line);
        assert_eq!(a["id"], "deep", "{a}");
        assert_eq!(a["error"]["code"], INVALID_REQUEST);
    }

    #[test]
    fn a_body_is_parsed_once_and_handed_on_with_its_repair() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let BodyCheck::Pass { message, repaired } = check_body(body) else {
            panic!("refused");
        };
        assert_eq!(serde_json::to_value(&message).unwrap()["id"], 1);
        assert_eq!(repaired, None);
        let body = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"s":"a\ud800"}}}"#;
        let BodyCheck::Pass { message, repaired } = check_body(body) else {
            panic!("refused");
        };
        let text = serde_json::to_value(&message).unwrap()["params"]["arguments"]["s"].clone();
        assert_eq!(text, "a\u{fffd}");
        let repaired: Value = serde_json::from_slice(&repaired.expect("repaired bytes")).unwrap();
        assert_eq!(repaired["params"]["arguments"]["s"], text);
        assert!(matches!(check_body(b" "), BodyCheck::Refuse(_)));
    }
}
