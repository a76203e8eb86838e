//! Tool-argument parsing fed arbitrary JSON: the typed parameters accept or refuse, and a
//! refused call returns an isError result without touching the portal (there is none
//! here: the endpoint is never contacted, so a call that tried would fail to run).
#![no_main]

use std::sync::OnceLock;

use bitrix24_task_results_mcp::bitrix::{Client, ClientOptions, Endpoint};
use bitrix24_task_results_mcp::chat::ChatMessagesParams;
use bitrix24_task_results_mcp::results::{
    AddFromChatParams, AddParams, DeleteParams, ListParams, UpdateParams,
};
use bitrix24_task_results_mcp::server::{Inventory, TaskResultsServer};
use bitrix24_task_results_mcp::tools::REGISTRY;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn server() -> &'static TaskResultsServer {
    static SERVER: OnceLock<TaskResultsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let endpoint = Endpoint::webhook("http://127.0.0.1:9/rest/1/fuzzsecret/").unwrap();
        let client = Client::new(endpoint.portal, ClientOptions::default());
        TaskResultsServer::new(client, endpoint.caller, Inventory::default())
    })
}

fn fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "task_result_add" => &["taskId", "text"],
        "task_result_add_from_chat" => &["messageId"],
        "task_result_update" => &["id", "text"],
        "task_result_list" => &[
            "taskId",
            "status",
            "authorId",
            "orderBy",
            "orderDirection",
            "limit",
            "offset",
        ],
        "task_result_delete" => &["id"],
        "task_chat_messages_list" => &["taskId", "limit", "beforeId"],
        _ => &[],
    }
}

fn valid(kind: &str, args: &Map<String, Value>) -> bool {
    let v = Value::Object(args.clone());
    match kind {
        "task_result_add" => serde_path_to_error::deserialize::<_, AddParams>(v).is_ok(),
        "task_result_add_from_chat" => {
            serde_path_to_error::deserialize::<_, AddFromChatParams>(v).is_ok()
        }
        "task_result_update" => serde_path_to_error::deserialize::<_, UpdateParams>(v).is_ok(),
        "task_result_list" => serde_path_to_error::deserialize::<_, ListParams>(v).is_ok(),
        "task_result_delete" => serde_path_to_error::deserialize::<_, DeleteParams>(v).is_ok(),
        "task_chat_messages_list" => {
            serde_path_to_error::deserialize::<_, ChatMessagesParams>(v).is_ok()
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let kind = REGISTRY[usize::from(selector) % REGISTRY.len()].name();
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    // An object is the arguments; any other value is tried in every field of the tool.
    let args = match value {
        Value::Object(map) => map,
        other => fields(kind)
            .iter()
            .map(|f| (f.to_string(), other.clone()))
            .collect(),
    };
    if valid(kind, &args) {
        return;
    }
    // Refused arguments return before any I/O, so no runtime is needed.
    let result = futures::executor::block_on(server().call_named(kind, args)).unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = result.content[0].as_text().unwrap().text.clone();
    assert!(text.starts_with("Invalid arguments for"), "{text}");
});
