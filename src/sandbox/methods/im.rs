//! v1 chat methods: `im.dialog.messages.get` (docs/bitrix24-api.md#task-chat) and `im.message.add`.
//!
//! v1 business errors use the v1 shape with HTTP 400. Codes are the `im` module's:
//! `DIALOG_ID_EMPTY`, `MESSAGE_EMPTY`, `ACCESS_ERROR` (docs/bitrix24-api.md#task-chat lists the first and last; the rest is sandbox choice).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::sandbox::reply::{ApiError, V1Error};
use crate::sandbox::time;
use crate::sandbox::world::{ChatKind, World};

/// Default and maximum page size of `im.dialog.messages.get`.
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 50;

/// v1 parameter names are matched case-insensitively (`DIALOG_ID` or `dialog_id`).
pub(super) fn v1_param<'a>(params: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// v1 (PHP) accepts integers and numeric strings alike.
pub(super) fn v1_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn v1_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn access_error() -> ApiError {
    V1Error::new(
        400,
        "ACCESS_ERROR",
        "You do not have access to the specified dialog",
    )
    .into()
}

/// `chat{N}` is a group/task chat, a bare number the private dialog with that user.
fn resolve_dialog(world: &World, user: i64, params: &Map<String, Value>) -> Result<i64, ApiError> {
    let dialog = v1_text(v1_param(params, "DIALOG_ID"));
    let dialog = dialog.trim();
    if dialog.is_empty() {
        return Err(V1Error::new(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty").into());
    }
    let lower = dialog.to_ascii_lowercase();
    let chat_id = if let Some(n) = lower.strip_prefix("chat") {
        n.parse::<i64>().map_err(|_| access_error())?
    } else {
        let other: i64 = dialog.parse().map_err(|_| access_error())?;
        world
            .chats
            .iter()
            .find(|(_, kind)| {
                matches!(kind, ChatKind::Private(m) if m.contains(&user) && m.contains(&other))
            })
            .map(|(id, _)| *id)
            .ok_or_else(access_error)?
    };
    if !world.chat_members(chat_id).contains(&user) {
        return Err(access_error());
    }
    Ok(chat_id)
}

/// `im.dialog.messages.get`: newest first. `LIMIT` defaults to 20 and is clamped to 1..=50;
/// `LAST_ID` returns messages older than it; `FIRST_ID` returns the `LIMIT` messages right
/// after it (still newest first, sandbox choice).
pub(super) fn dialog_messages_get(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let chat_id = resolve_dialog(world, ctx.user, params)?;
    let limit = v1_param(params, "LIMIT")
        .and_then(v1_int)
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT) as usize;
    let last_id = v1_param(params, "LAST_ID")
        .and_then(v1_int)
        .filter(|v| *v > 0);
    let first_id = v1_param(params, "FIRST_ID")
        .and_then(v1_int)
        .filter(|v| *v > 0);
    let in_chat = world.messages.values().filter(|m| m.chat_id == chat_id);
    let mut page: Vec<_> = match first_id {
        Some(first) => in_chat.filter(|m| m.id > first).take(limit).collect(),
        None => {
            let older: Vec<_> = in_chat
                .filter(|m| last_id.is_none_or(|last| m.id < last))
                .collect();
            older[older.len().saturating_sub(limit)..].to_vec()
        }
    };
    page.reverse();
    let authors: BTreeSet<i64> = page.iter().map(|m| m.author_id).collect();
    let messages: Vec<Value> = page
        .iter()
        .map(|m| {
            let params = if m.file_ids.is_empty() {
                json!({})
            } else {
                json!({ "FILE_ID": m.file_ids })
            };
            json!({
                "id": m.id,
                "chat_id": m.chat_id,
                "author_id": m.author_id,
                "date": time::portal_datetime(m.date),
                "text": m.text,
                "unread": false,
                "params": params,
            })
        })
        .collect();
    let users: Vec<Value> = authors
        .iter()
        .filter_map(|id| world.user(*id))
        .map(|u| {
            json!({
                "id": u.id, "name": u.name(), "first_name": u.first_name,
                "last_name": u.last_name, "active": true,
            })
        })
        .collect();
    Ok(json!({ "chat_id": chat_id, "messages": messages, "users": users, "files": [] }))
}

/// `im.message.add`: `{"result": <new message id>}` (docs/bitrix24-api.md#task-chat).
pub(super) fn message_add(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let chat_id = resolve_dialog(world, ctx.user, params)?;
    let text = v1_text(v1_param(params, "MESSAGE"));
    if text.trim().is_empty() {
        return Err(V1Error::new(400, "MESSAGE_EMPTY", "Message can't be empty").into());
    }
    let id = world.add_message(chat_id, ctx.user, text, ctx.now);
    Ok(json!(id))
}
