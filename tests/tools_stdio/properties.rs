//! Property tests: tool arguments of every shape and arbitrary portal answers never make
//! the server panic; invalid arguments are refused before anything reaches the portal.
//!
//! Tool calls run in-process (`TaskResultsServer::call_named`) against an in-process sandbox
//! over real HTTP, so `sandbox.requests()` shows exactly what reached the "portal". A
//! panic anywhere in a call fails the property. Case counts are modest to keep the suite
//! fast; the fuzz targets (fuzz/) search the same ground for longer.

use bitrix24_task_results_mcp::bitrix::envelope::decode;
use bitrix24_task_results_mcp::bitrix::{CallError, Client, ClientOptions, Endpoint};
use bitrix24_task_results_mcp::chat::ChatMessagesParams;
use bitrix24_task_results_mcp::results::{
    AddFromChatParams, AddParams, DeleteParams, ListParams, TaskResult, UpdateParams,
};
use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use bitrix24_task_results_mcp::server::guard::INTERNAL_ERROR;
use bitrix24_task_results_mcp::server::{Inventory, TaskResultsServer};
use bitrix24_task_results_mcp::tasks::{GetParams, SearchParams};
use bitrix24_task_results_mcp::tools::{REGISTRY, errors};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// One runtime, sandbox and server for all cases of a property.
struct Rig {
    rt: tokio::runtime::Runtime,
    sandbox: Sandbox,
    server: TaskResultsServer,
}

impl Rig {
    fn new() -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sandbox = rt
            .block_on(Sandbox::start(SandboxOptions::default()))
            .unwrap();
        let endpoint = Endpoint::webhook(&sandbox.webhook_url()).unwrap();
        let client = Client::new(endpoint.portal, ClientOptions::default());
        let server = TaskResultsServer::new(client, endpoint.caller, Inventory::default());
        Rig {
            rt,
            sandbox,
            server,
        }
    }

    /// Calls `kind` with `args` and returns (isError, text, requests that reached the portal).
    fn call(&self, kind: &'static str, args: Map<String, Value>) -> (bool, String, usize) {
        let before = self.sandbox.requests().len();
        let result = self
            .rt
            .block_on(self.server.call_named(kind, args))
            .unwrap();
        let after = self.sandbox.requests().len();
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join("\n");
        (result.is_error == Some(true), text, after - before)
    }
}

fn kinds() -> impl Strategy<Value = &'static str> {
    prop::sample::select(REGISTRY.iter().map(|t| t.name()).collect::<Vec<_>>())
}

fn read_only(name: &str) -> bool {
    bitrix24_task_results_mcp::tools::find(name).is_some_and(|t| t.read_only())
}

/// Whether the arguments are valid for `kind`, by the same typed parameters the server uses.
fn valid(kind: &'static str, args: &Map<String, Value>) -> bool {
    let v = Value::Object(args.clone());
    match kind {
        "task_result_add" => serde_json::from_value::<AddParams>(v).is_ok(),
        "task_result_add_from_chat" => serde_json::from_value::<AddFromChatParams>(v).is_ok(),
        "task_result_update" => serde_json::from_value::<UpdateParams>(v).is_ok(),
        "task_result_list" => serde_json::from_value::<ListParams>(v).is_ok(),
        "task_result_delete" => serde_json::from_value::<DeleteParams>(v).is_ok(),
        "task_chat_messages_list" => serde_json::from_value::<ChatMessagesParams>(v).is_ok(),
        "task_search" => serde_json::from_value::<SearchParams>(v).is_ok(),
        "task_get" => serde_json::from_value::<GetParams>(v).is_ok(),
        other => panic!("no parameters known for {other}"),
    }
}

/// Strings models (and attackers) send: numeric ones, signed, padded, huge, exotic.
fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!(" {n} ")),
        Just("18446744073709551616".to_string()),
        Just("-0".to_string()),
        Just("1e3".to_string()),
        Just("0x10".to_string()),
        Just(String::new()),
        Just(" \t\n".to_string()),
        Just("\u{0}".to_string()),
        Just("\u{FFFD}\u{202E}evil\u{200B}".to_string()),
        Just("open".to_string()),
        Just("DESC".to_string()),
        (1usize..40_000).prop_map(|n| "я".repeat(n)),
    ]
}

/// Numbers at the edges: negative, zero, huge, fractional, beyond u64.
fn tricky_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e20)),
        Just(json!(-1e300)),
        Just(json!(4294967296.0)),
        Just(json!(51.0)),
        Just(json!(1.5)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        (1u64..60).prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        tricky_number(),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value nested `depth` levels deep (arrays and objects alternating).
fn deep(depth: usize) -> Value {
    let mut v = json!(1);
    for i in 0..depth {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"k": v})
        };
    }
    v
}

/// Field names: the real ones (in the wrong case too), neighbours and noise.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "taskId",
            "text",
            "id",
            "messageId",
            "status",
            "authorId",
            "orderBy",
            "orderDirection",
            "limit",
            "offset",
            "TASK_ID",
            "taskid",
            "fields",
            "auth",
            "filter",
            "",
        ])
        .prop_map(String::from),
        any::<String>(),
    ]
}

fn arguments() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        field_name(),
        prop_oneof![
            3 => any_json(),
            1 => (50usize..120).prop_map(deep),
        ],
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arguments of any shape: invalid ones are refused with an isError result before the
    /// portal; valid ones reach it exactly once; nothing panics.
    #[test]
    fn any_arguments_are_refused_or_sent_once(kind in kinds(), args in arguments()) {
        static RIG: OnceLock<Rig> = OnceLock::new();
        let rig = RIG.get_or_init(Rig::new);
        {
            let should_pass = valid(kind, &args);
            let (is_error, text, reached) = rig.call(kind, args.clone());
            prop_assert!(!text.starts_with(INTERNAL_ERROR), "{text}");
            if should_pass {
                // A write is sent once; a read may take more than one REST call (the chat
                // tool looks the chat up first).
                if read_only(kind) {
                    prop_assert!(reached >= 1, "a valid call reaches the portal: {}", text);
                } else {
                    prop_assert_eq!(reached, 1, "a valid write reaches the portal once: {}", text);
                }
                prop_assert!(!text.starts_with("Invalid arguments"), "{}", text);
            } else {
                prop_assert!(is_error, "invalid arguments {:?} gave success: {}", args, text);
                prop_assert!(text.starts_with(&format!("Invalid arguments for {}", kind)), "{}", text);
                prop_assert!(text.contains("Nothing was sent to Bitrix24"), "{}", text);
                prop_assert_eq!(reached, 0, "invalid arguments reached the portal: {:?}", args);
            }
        }
    }
}

/// Arguments broken in one known way, with the field that must be named.
fn broken_arguments() -> impl Strategy<Value = (&'static str, Map<String, Value>, &'static str)> {
    let bad_id = prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        any::<i64>()
            .prop_filter("negative", |n| *n < 0)
            .prop_map(Value::from),
        Just(json!(1e20)),
        Just(json!(1.5)),
        Just(json!(true)),
        Just(json!(null)),
        Just(json!([51])),
        Just(json!({"id": 51})),
        Just(json!("")),
        Just(json!("51abc")),
        Just(json!("-7")),
        Just(json!("18446744073709551616")),
        (50usize..120).prop_map(deep),
    ];
    let bad_text = prop_oneof![
        Just(json!("")),
        Just(json!("   \n\t")),
        (30_001usize..31_000).prop_map(|n| json!("ё".repeat(n))),
        Just(json!(42)),
        Just(json!(["a"])),
        Just(json!(null)),
        Just(json!({"text": "x"})),
    ];
    let bad_limit = prop_oneof![
        Just(json!(0)),
        (51u64..1_000_000).prop_map(Value::from),
        Just(json!(-5)),
        Just(json!("many")),
    ];
    prop_oneof![
        bad_id.clone().prop_map(|id| (
            "task_result_add",
            obj(json!({"taskId": id, "text": "ok"})),
            "taskId"
        )),
        bad_text.clone().prop_map(|t| (
            "task_result_add",
            obj(json!({"taskId": 51, "text": t})),
            "text"
        )),
        bad_id.clone().prop_map(|id| (
            "task_result_add_from_chat",
            obj(json!({"messageId": id})),
            "messageId"
        )),
        bad_id.clone().prop_map(|id| (
            "task_result_update",
            obj(json!({"id": id, "text": "ok"})),
            "id"
        )),
        bad_text.prop_map(|t| (
            "task_result_update",
            obj(json!({"id": 17, "text": t})),
            "text"
        )),
        bad_id
            .clone()
            .prop_map(|id| ("task_result_delete", obj(json!({"id": id})), "id")),
        bad_id
            .clone()
            .prop_map(|id| ("task_result_list", obj(json!({"taskId": id})), "taskId")),
        // null is "absent" for an optional field, so it is not broken there.
        bad_id
            .prop_filter("null means absent", |id| !id.is_null())
            .prop_map(|id| (
                "task_result_list",
                obj(json!({"taskId": 51, "authorId": id})),
                "authorId"
            )),
        bad_limit.prop_map(|l| (
            "task_result_list",
            obj(json!({"taskId": 51, "limit": l})),
            "limit"
        )),
        Just((
            "task_result_list",
            obj(json!({"taskId": 51, "offset": -1})),
            "offset"
        )),
        Just((
            "task_result_list",
            obj(json!({"taskId": 51, "status": "OPENED"})),
            "status"
        )),
        (kinds(), "[a-zA-Z_]{1,12}").prop_filter_map("an unknown name", |(k, name)| {
            let mut args = valid_args(k);
            if args.contains_key(&name) {
                return None;
            }
            args.insert(name, json!(1));
            Some((k, args, ""))
        }),
        // Every tool but task_search has a required argument.
        kinds()
            .prop_filter("has a required argument", |k| *k != "task_search")
            .prop_map(|k| (k, Map::new(), "")),
    ]
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn valid_args(kind: &'static str) -> Map<String, Value> {
    obj(match kind {
        "task_result_add" => json!({"taskId": 51, "text": "done"}),
        "task_result_add_from_chat" => json!({"messageId": 900}),
        "task_result_update" => json!({"id": 17, "text": "done"}),
        "task_result_list" => json!({"taskId": 51}),
        "task_result_delete" => json!({"id": 17}),
        "task_chat_messages_list" => json!({"taskId": 51}),
        "task_search" => json!({"query": "report"}),
        "task_get" => json!({"taskId": 51}),
        other => panic!("no arguments known for {other}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Each known way of breaking arguments gives an isError naming the field, and nothing
    /// reaches the portal.
    #[test]
    fn broken_arguments_never_reach_the_portal((kind, args, field) in broken_arguments()) {
        static RIG: OnceLock<Rig> = OnceLock::new();
        let rig = RIG.get_or_init(Rig::new);
        {
            let (is_error, text, reached) = rig.call(kind, args.clone());
            prop_assert!(is_error, "{:?} gave success: {}", args, text);
            prop_assert!(text.starts_with("Invalid arguments"), "{}", text);
            prop_assert!(text.contains(&format!("`{field}`")) || field.is_empty(), "field {} not named: {}", field, text);
            prop_assert!(text.len() < 4_000, "the error echoes too much: {} bytes", text.len());
            prop_assert_eq!(reached, 0);
        }
    }
}

/// Valid arguments in the shapes models send: numeric strings, padded, float-typed ids,
/// upper-case enums, text at both length bounds and in any script.
fn valid_variants() -> impl Strategy<Value = (&'static str, Map<String, Value>)> {
    let id = prop_oneof![
        (1u64..1_000_000).prop_map(Value::from),
        (1u64..1_000_000).prop_map(|n| json!(n.to_string())),
        (1u64..1_000_000).prop_map(|n| json!(format!("  {n}\t"))),
        (1u32..1_000_000).prop_map(|n| json!(f64::from(n))),
    ];
    let text = prop_oneof![
        "\\PC{1,200}",
        Just("x".repeat(30_000)),
        Just("я".repeat(30_000)),
        Just("[b]bold[/b] <script>alert(1)</script> {{\"jsonrpc\":\"2.0\"}}".to_string()),
    ]
    .prop_filter("not blank", |t| !t.trim().is_empty());
    prop_oneof![
        (id.clone(), text.clone()).prop_map(|(i, t)| ("task_result_add", obj(json!({"taskId": i, "text": t})))),
        id.clone().prop_map(|i| ("task_result_add_from_chat", obj(json!({"messageId": i})))),
        (id.clone(), text).prop_map(|(i, t)| ("task_result_update", obj(json!({"id": i, "text": t})))),
        id.clone().prop_map(|i| ("task_result_delete", obj(json!({"id": i})))),
        (id.clone(), 1u32..=50, id.clone()).prop_map(|(t, l, b)| ("task_chat_messages_list", obj(json!({"taskId": t, "limit": l, "beforeId": b})))),
        (id.clone(), prop::sample::select(vec!["open", "CLOSED", "Open"]), id, prop::sample::select(vec!["id", "createdAt", "messageId"]),
            prop::sample::select(vec!["asc", "DESC"]), 1u32..=50, prop_oneof![(0u32..1000).prop_map(Value::from), (0u32..1000).prop_map(|n| json!(n.to_string()))])
            .prop_map(|(t, st, a, ob, od, l, o)| ("task_result_list", obj(json!({"taskId": t, "status": st, "authorId": a, "orderBy": ob, "orderDirection": od, "limit": l, "offset": o})))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Valid arguments in every accepted shape reach the portal (a write exactly once).
    #[test]
    fn valid_variants_reach_the_portal_once((kind, args) in valid_variants()) {
        static RIG: OnceLock<Rig> = OnceLock::new();
        let rig = RIG.get_or_init(Rig::new);
        prop_assert!(valid(kind, &args), "{:?}", args);
        let (_, text, reached) = rig.call(kind, args.clone());
        if read_only(kind) {
            prop_assert!(reached >= 1, "{:?}: {}", args, text);
        } else {
            prop_assert_eq!(reached, 1, "{:?}: {}", args, text);
        }
        prop_assert!(!text.starts_with("Invalid arguments") && !text.starts_with(INTERNAL_ERROR), "{}", text);
    }
}

#[derive(Debug, Deserialize)]
struct Item {
    #[allow(dead_code)]
    item: TaskResult,
}

#[derive(Debug, Deserialize)]
struct Items {
    #[allow(dead_code)]
    items: Vec<TaskResult>,
}

/// The decoder's verdict must agree with the envelope's shape, whatever the content.
fn check_decode(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let as_object = parsed.as_ref().and_then(Value::as_object);
    let has_error = as_object.is_some_and(|o| o.contains_key("error"));
    let success_shape = as_object.is_some_and(|o| o.contains_key("result"))
        && !has_error
        && (200..300).contains(&status);
    for outcome in [
        decode::<Value>(status, None, body).map(|_| ()),
        decode::<Item>(status, None, body).map(|_| ()),
        decode::<Items>(status, None, body).map(|_| ()),
    ] {
        match outcome {
            Ok(()) => prop_assert!(success_shape, "accepted a non-success envelope"),
            Err(CallError::Portal(p)) => {
                prop_assert!(has_error);
                prop_assert_eq!(p.status, status);
                prop_assert!(!p.code.is_empty());
                let _ = p.class();
                let _ = p.fields();
                // The error text every tool would show must build too.
                for tool in REGISTRY {
                    let r = errors::call_failed(
                        *tool,
                        "m",
                        "https://p.example",
                        &CallError::Portal(p.clone()),
                    );
                    prop_assert_eq!(r.is_error, Some(true));
                }
            }
            Err(CallError::Decode { status: s, detail }) => {
                prop_assert_eq!(s, status);
                prop_assert!(!detail.is_empty());
                prop_assert!(
                    detail.len() < 2_000,
                    "detail echoes too much: {}",
                    detail.len()
                );
            }
            Err(other) => prop_assert!(false, "unexpected error kind: {:?}", other),
        }
    }
    Ok(())
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        prop::sample::select(vec![201u16, 204, 400, 401, 403, 404, 429, 500, 502, 503]),
        any::<u16>(),
    ]
}

/// Envelopes of the documented shapes filled with arbitrary JSON.
fn envelope() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_json(),
        (any_json(), any_json()).prop_map(|(r, t)| json!({"result": r, "time": t})),
        any_json().prop_map(|i| json!({"result": {"item": i}})),
        prop::collection::vec(any_json(), 0..4).prop_map(|i| json!({"result": {"items": i}})),
        (any_json(), any_json()).prop_map(|(e, d)| json!({"error": e, "error_description": d})),
        (any_json(), any_json(), any_json()).prop_map(|(c, m, v)| {
            json!({"error": {"code": c, "message": m, "validation": v, "operating_reset_at": "NaN"}})
        }),
        any_json().prop_map(|t| json!({"error": "OPERATION_TIME_LIMIT", "operating_reset_at": t, "time": {"operating_reset_at": 1e308}})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoder_survives_arbitrary_bytes(status in status(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decode(status, &body)?;
    }

    #[test]
    fn decoder_survives_arbitrary_json(status in status(), body in envelope()) {
        check_decode(status, body.to_string().as_bytes())?;
    }

    #[test]
    fn decoder_survives_truncated_json(status in status(), body in envelope(), cut in any::<prop::sample::Index>()) {
        let text = body.to_string();
        let bytes = &text.as_bytes()[..cut.index(text.len() + 1)];
        check_decode(status, bytes)?;
    }
}
