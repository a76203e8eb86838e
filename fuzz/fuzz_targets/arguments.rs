//! Tool-argument parsing fed arbitrary JSON: the typed parameters accept or refuse, and a
//! refused call returns an isError result without touching the portal (there is none
//! here: the endpoint is never contacted, so a call that tried would fail to run).
#![no_main]

use std::sync::OnceLock;

use bitrix24_task_results_mcp::bitrix::{Client, ClientOptions, Endpoint};
use bitrix24_task_results_mcp::chat::ChatMessagesParams;
use bitrix24_task_results_mcp::results::{
    AddFromChatParams, AddParams, DeleteParams, ListParams, TaskResults, UpdateParams,
};
use bitrix24_task_results_mcp::server::{TaskResultsServer, ToolKind};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn server() -> &'static TaskResultsServer {
    static SERVER: OnceLock<TaskResultsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let endpoint = Endpoint::webhook("http://127.0.0.1:9/rest/1/fuzzsecret/").unwrap();
        let client = Client::new(endpoint, ClientOptions::default());
        TaskResultsServer::new(TaskResults::new(client), ToolKind::ALL.to_vec())
    })
}

fn fields(kind: ToolKind) -> &'static [&'static str] {
    match kind {
        ToolKind::Add => &["taskId", "text"],
        ToolKind::AddFromChat => &["messageId"],
        ToolKind::Update => &["id", "text"],
        ToolKind::List => &[
            "taskId",
            "status",
            "authorId",
            "orderBy",
            "orderDirection",
            "limit",
            "offset",
        ],
        ToolKind::Delete => &["id"],
        ToolKind::ChatMessages => &["taskId", "limit", "beforeId"],
    }
}

fn valid(kind: ToolKind, args: &Map<String, Value>) -> bool {
    let v = Value::Object(args.clone());
    match kind {
        ToolKind::Add => serde_path_to_error::deserialize::<_, AddParams>(v).is_ok(),
        ToolKind::AddFromChat => {
            serde_path_to_error::deserialize::<_, AddFromChatParams>(v).is_ok()
        }
        ToolKind::Update => serde_path_to_error::deserialize::<_, UpdateParams>(v).is_ok(),
        ToolKind::List => serde_path_to_error::deserialize::<_, ListParams>(v).is_ok(),
        ToolKind::Delete => serde_path_to_error::deserialize::<_, DeleteParams>(v).is_ok(),
        ToolKind::ChatMessages => {
            serde_path_to_error::deserialize::<_, ChatMessagesParams>(v).is_ok()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let kind = ToolKind::ALL[usize::from(selector) % ToolKind::ALL.len()];
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
    let result = futures::executor::block_on(server().call(kind, args));
    assert_eq!(result.is_error, Some(true));
    let text = result.content[0].as_text().unwrap().text.clone();
    assert!(text.starts_with("Invalid arguments for"), "{text}");
});
