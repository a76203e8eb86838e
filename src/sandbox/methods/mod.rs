//! The method registry: which names exist in which API generation, their scopes and handlers.

mod im;
mod legacy;
mod list;
mod results;
mod task;
mod task_list;

use serde_json::{Map, Value};

use super::reply::ApiError;
use super::world::World;

/// Which URL family a call came through (`/rest/api/…` or `/rest/…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    V3,
    V1,
}

/// Per-call facts a handler may need.
pub(crate) struct Ctx<'a> {
    pub(crate) user: i64,
    pub(crate) now: i64,
    /// Raw request body (list re-reads it for the key order of `order`).
    pub(crate) body: &'a [u8],
}

type Handler = fn(&mut World, &Ctx, &Map<String, Value>) -> Result<Value, ApiError>;

pub(crate) struct MethodSpec {
    pub(crate) name: &'static str,
    /// The credential needs at least one of these scopes.
    pub(crate) scopes: &'static [&'static str],
    /// Create/modify/delete methods honour `Idempotency-Key` (docs/bitrix24-api.md#idempotency-key).
    pub(crate) mutating: bool,
    pub(crate) handler: Handler,
}

/// REST 3.0 task methods accept the `tasks` scope of their doc pages or the `task` scope
/// Bitrix24's own template MCP server uses with them (docs/bitrix24-api.md#scopes leaves this open).
const TASK_SCOPES: &[&str] = &["tasks", "task"];

const V3_METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "tasks.task.result.add",
        scopes: TASK_SCOPES,
        mutating: true,
        handler: results::add,
    },
    MethodSpec {
        name: "tasks.task.result.addfromchatmessage",
        scopes: TASK_SCOPES,
        mutating: true,
        handler: results::add_from_chat_message,
    },
    MethodSpec {
        name: "tasks.task.result.update",
        scopes: TASK_SCOPES,
        mutating: true,
        handler: results::update,
    },
    MethodSpec {
        name: "tasks.task.result.delete",
        scopes: TASK_SCOPES,
        mutating: true,
        handler: results::delete,
    },
    MethodSpec {
        name: "tasks.task.result.list",
        scopes: TASK_SCOPES,
        mutating: false,
        handler: list::list,
    },
    MethodSpec {
        name: "tasks.task.get",
        scopes: TASK_SCOPES,
        mutating: false,
        handler: task::get,
    },
    MethodSpec {
        name: "tasks.task.chat.message.send",
        scopes: TASK_SCOPES,
        mutating: true,
        handler: task::chat_message_send,
    },
];

/// v1 methods the sandbox knows. Every other name under `/rest/` (including the v3-only
/// result methods) answers 404 `ERROR_METHOD_NOT_FOUND` (docs/bitrix24-api.md#urls).
const V1_METHODS: &[MethodSpec] = &[
    MethodSpec {
        name: "im.dialog.messages.get",
        scopes: &["im"],
        mutating: false,
        handler: im::dialog_messages_get,
    },
    MethodSpec {
        name: "im.message.add",
        scopes: &["im"],
        mutating: false,
        handler: im::message_add,
    },
    MethodSpec {
        name: "tasks.task.result.list",
        scopes: &["task"],
        mutating: false,
        handler: legacy::result_list,
    },
    // Docs tasks-task-list.md: scope `task` only (REST 3.0's `tasks` does not open v1).
    MethodSpec {
        name: "tasks.task.list",
        scopes: &["task"],
        mutating: false,
        handler: task_list::list,
    },
];

/// Looks up a lower-cased method name.
pub(crate) fn find(api: Api, name: &str) -> Option<&'static MethodSpec> {
    let table = match api {
        Api::V3 => V3_METHODS,
        Api::V1 => V1_METHODS,
    };
    table.iter().find(|m| m.name == name)
}
