//! `tasks.task.result.add`, `.addfromchatmessage`, `.update`, `.delete` (docs/bitrix24-api.md#task-results).
//!
//! Check order (docs/bitrix24-api.md#check-order and the [SRC] notes): request shape (`fields`, `id`/`filter`)
//! → unknown properties → parameter types → DTO rules → access → business rules.

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::sandbox::params::{IntParam, int_param, present};
use crate::sandbox::reply::{ApiError, V3Error, Violation};
use crate::sandbox::world::{ChatKind, World};

const ENTITY: &str = "ResultDto";

/// Sandbox choice: no maximum is documented (docs/bitrix24-api.md#unconfirmed); the sandbox rejects more than 30000
/// characters (the figure a third-party server advertises) with DTOVALIDATION on `text`.
pub(crate) const MAX_TEXT_CHARS: usize = 30_000;

/// Localised default title of a result made from an empty message (English portal).
const DEFAULT_RESULT_TEXT: &str = "Result";

/// `fields` must be an object; `[]` is accepted as an empty one (PHP decodes `{}` and `[]` alike).
fn fields_of(params: &Map<String, Value>) -> Result<Map<String, Value>, V3Error> {
    match present(params, "fields") {
        None => Err(V3Error::request_field(
            "fields",
            "Required field `fields` is missing",
        )),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(Value::Array(a)) if a.is_empty() => Ok(Map::new()),
        Some(_) => Err(V3Error::wrong_type("fields", "array")),
    }
}

/// Anything but `allowed` (and `fileIds`, which is a known but unfillable property) is
/// UNKNOWNDTOPROPERTY on `fields`.
fn reject_unknown(fields: &Map<String, Value>, allowed: &[&str]) -> Result<(), V3Error> {
    match fields
        .keys()
        .find(|k| k.as_str() != "fileIds" && !allowed.contains(&k.as_str()))
    {
        Some(k) => Err(V3Error::unknown_property("fields", k, ENTITY)),
        None => Ok(()),
    }
}

/// Optional integer property: wrong types are REQUESTVALIDATION.
fn int_field(fields: &Map<String, Value>, key: &str) -> Result<Option<i64>, V3Error> {
    match int_param(fields, key) {
        IntParam::Missing => Ok(None),
        IntParam::Int(v) => Ok(Some(v)),
        IntParam::WrongType => Err(V3Error::wrong_type(key, "int")),
    }
}

/// Optional string property: wrong types are REQUESTVALIDATION.
fn text_field(fields: &Map<String, Value>) -> Result<Option<String>, V3Error> {
    match present(fields, "text") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(V3Error::wrong_type("text", "string")),
    }
}

fn not_filled(field: &str) -> Violation {
    Violation::on(
        field,
        format!("The required field \"{field}\" is not filled"),
    )
}

/// DTO checks on `text`. Sandbox choice: whitespace-only text counts as not filled.
fn check_text(text: Option<&str>, out: &mut Vec<Violation>) {
    match text {
        None => out.push(not_filled("text")),
        Some(t) if t.trim().is_empty() => out.push(not_filled("text")),
        Some(t) if t.chars().count() > MAX_TEXT_CHARS => out.push(Violation::on(
            "text",
            format!("The field \"text\" must not exceed {MAX_TEXT_CHARS} characters"),
        )),
        Some(_) => {}
    }
}

fn check_file_ids(fields: &Map<String, Value>, out: &mut Vec<Violation>) {
    if fields.contains_key("fileIds") {
        out.push(Violation::on(
            "fileIds",
            "Field `fileIds` is not available for filling",
        ));
    }
}

fn dto_result(violations: Vec<Violation>) -> Result<(), V3Error> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(V3Error::dto(violations))
    }
}

fn item_result(world: &World, id: i64, user: i64) -> Value {
    match world.results.get(&id) {
        Some(r) => json!({ "item": world.result_item(r, user) }),
        None => json!({ "item": null }),
    }
}

/// `tasks.task.result.add`.
///
/// Sandbox choices: an existing task the user is not a member of => 403 on `taskId`; a task
/// that does not exist passes the access check and fails with 400 REQUESTVALIDATION
/// "Task not found" (one of the two answers docs/bitrix24-api.md#add allows). `taskId` 0 is
/// "Task id must be set", negative ids "Task id must be positive".
pub(super) fn add(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let fields = fields_of(params)?;
    reject_unknown(&fields, &["taskId", "text"])?;
    let task_id = int_field(&fields, "taskId")?;
    let text = text_field(&fields)?;
    let mut violations = Vec::new();
    check_file_ids(&fields, &mut violations);
    if task_id.is_none() {
        violations.push(not_filled("taskId"));
    }
    check_text(text.as_deref(), &mut violations);
    dto_result(violations)?;
    let (Some(task_id), Some(text)) = (task_id, text) else {
        return Err(V3Error::dto(vec![not_filled("taskId")]).into());
    };
    if world.tasks.contains_key(&task_id) && !world.can_read_task(task_id, ctx.user) {
        return Err(V3Error::access_denied("taskId").into());
    }
    if task_id == 0 {
        return Err(V3Error::request_field("taskId", "Task id must be set").into());
    }
    if task_id < 0 {
        return Err(V3Error::request_field("taskId", "Task id must be positive").into());
    }
    if !world.tasks.contains_key(&task_id) {
        return Err(V3Error::request_field("taskId", "Task not found").into());
    }
    let id = world.add_result(task_id, text, ctx.user, None, Vec::new(), ctx.now);
    Ok(item_result(world, id, ctx.user))
}

/// `tasks.task.result.addfromchatmessage`.
///
/// Sandbox choices: an unknown (or non-positive) message id is 400 REQUESTVALIDATION
/// "Message not found" on `messageId` ([INFERRED] in docs/bitrix24-api.md#addfromchatmessage); the checks then run
/// not-a-task-chat → task gone ("Task not found" on `taskId`) → access (403 on `messageId`).
/// The result's author is the calling user, its text the message text (or the default
/// title "Result" when the message is empty), its `fileIds` the message's files. The same
/// message may be turned into several results (the v3 docs list no "already exists" error).
pub(super) fn add_from_chat_message(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let fields = fields_of(params)?;
    reject_unknown(&fields, &["messageId"])?;
    let message_id = int_field(&fields, "messageId")?;
    let mut violations = Vec::new();
    check_file_ids(&fields, &mut violations);
    if message_id.is_none() {
        violations.push(not_filled("messageId"));
    }
    dto_result(violations)?;
    let Some(message_id) = message_id else {
        return Err(V3Error::dto(vec![not_filled("messageId")]).into());
    };
    let Some(message) = world.messages.get(&message_id) else {
        return Err(V3Error::request_field("messageId", "Message not found").into());
    };
    let Some(ChatKind::Task(task_id)) = world.chats.get(&message.chat_id) else {
        return Err(V3Error::request_field("messageId", "Message is not from task chat").into());
    };
    let task_id = *task_id;
    if !world.tasks.contains_key(&task_id) {
        return Err(V3Error::request_field("taskId", "Task not found").into());
    }
    if !world.can_read_task(task_id, ctx.user) {
        return Err(V3Error::access_denied("messageId").into());
    }
    let text = if message.text.trim().is_empty() {
        DEFAULT_RESULT_TEXT.to_string()
    } else {
        message.text.clone()
    };
    let files = message.file_ids.clone();
    let id = world.add_result(task_id, text, ctx.user, Some(message_id), files, ctx.now);
    Ok(item_result(world, id, ctx.user))
}

/// Shared `id`/`filter` checks of update and delete.
///
/// Sandbox choices: with neither given, both documented messages come back without `field`
/// (exactly the verbatim delete example); with both, only "Only one of the values…". A
/// `filter` alone is refused on `filter` (the docs tell callers to pass `id`). A
/// non-positive id is REQUESTVALIDATION "Result id must be positive" on `id`.
fn result_id(params: &Map<String, Value>) -> Result<i64, V3Error> {
    let has_filter = present(params, "filter").is_some();
    let id = int_param(params, "id");
    match (id, has_filter) {
        (IntParam::Missing, false) => Err(V3Error::request(vec![
            Violation::bare("At least one required field must be filled: id, filter"),
            Violation::bare("Only one of the values must be provided: id, filter"),
        ])),
        (IntParam::Missing, true) => Err(V3Error::request_field(
            "filter",
            "The sandbox supports only `id` for this method",
        )),
        (_, true) => Err(V3Error::request(vec![Violation::bare(
            "Only one of the values must be provided: id, filter",
        )])),
        (IntParam::WrongType, false) => Err(V3Error::wrong_type("id", "int")),
        (IntParam::Int(v), false) if v <= 0 => {
            Err(V3Error::request_field("id", "Result id must be positive"))
        }
        (IntParam::Int(v), false) => Ok(v),
    }
}

/// Unknown ids and results of other authors are both 403 on `id` (docs/bitrix24-api.md#update, #delete).
fn check_author(world: &World, id: i64, user: i64) -> Result<(), V3Error> {
    match world.results.get(&id) {
        Some(r) if world.may_modify(r, user) => Ok(()),
        _ => Err(V3Error::access_denied("id")),
    }
}

/// `tasks.task.result.update`: sets `text` and `updatedAt`.
pub(super) fn update(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let id = result_id(params)?;
    let fields = fields_of(params)?;
    reject_unknown(&fields, &["text"])?;
    let text = text_field(&fields)?;
    let mut violations = Vec::new();
    check_file_ids(&fields, &mut violations);
    check_text(text.as_deref(), &mut violations);
    dto_result(violations)?;
    check_author(world, id, ctx.user)?;
    if let (Some(r), Some(text)) = (world.results.get_mut(&id), text) {
        r.text = text;
        r.updated_at = Some(ctx.now);
    }
    Ok(item_result(world, id, ctx.user))
}

/// `tasks.task.result.delete`: removes the row, answers `{"result":true}`.
pub(super) fn delete(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let id = result_id(params)?;
    check_author(world, id, ctx.user)?;
    world.results.remove(&id);
    Ok(json!({ "result": true }))
}
