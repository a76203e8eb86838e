//! REST 3.0 `tasks.task.get` (docs/bitrix24-api.md#task-chat; official pages
//! tasks-task-get-rest-v3.md, fields-rest-v3.md) and `tasks.task.chat.message.send`.

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::sandbox::params::{IntParam, int_param, present};
use crate::sandbox::reply::{ApiError, ENTITY_NOT_FOUND, INVALID_SELECT, V3Error, Violation};
use crate::sandbox::time;
use crate::sandbox::world::{Task, World};

/// Own fields of the sandbox task item, in output order (a subset of docs
/// fields-rest-v3.md).
const TASK_FIELDS: [&str; 14] = [
    "id",
    "title",
    "status",
    "deadline",
    "creatorId",
    "responsibleId",
    "created",
    "changed",
    "closed",
    "chatId",
    "containsResults",
    "requireResult",
    "link",
    "rights",
];

/// Fields of the `chat` relation.
const CHAT_FIELDS: [&str; 3] = ["id", "entityId", "entityType"];

/// Fields of the user relations (`creator`, `responsible`; docs fields-rest-v3.md#user).
const USER_FIELDS: [&str; 8] = [
    "id",
    "name",
    "role",
    "image",
    "gender",
    "email",
    "externalAuthId",
    "rights",
];

/// The relations a `select` may name with a dot.
const RELATIONS: [(&str, &[&str]); 3] = [
    ("chat", &CHAT_FIELDS),
    ("creator", &USER_FIELDS),
    ("responsible", &USER_FIELDS),
];

fn task_item(world: &World, t: &Task, user: i64) -> Map<String, Value> {
    let contains_results = world.results.values().any(|r| r.task_id == t.id);
    let member = t.member_ids.contains(&user);
    let open = !t.is_completed() && t.status != "declined";
    let value = json!({
        "id": t.id,
        "title": t.title,
        "status": t.status,
        "deadline": t.deadline.map(time::portal_datetime),
        "creatorId": t.creator_id,
        "responsibleId": t.responsible_id,
        "created": time::portal_datetime(t.created),
        "changed": time::portal_datetime(t.changed),
        "closed": t.closed.map(time::portal_datetime),
        "chatId": t.chat_id,
        "containsResults": contains_results,
        "requireResult": t.require_result,
        "link": format!("/company/personal/user/{user}/tasks/task/view/{}/", t.id),
        "rights": {
            "read": member,
            "edit": t.creator_id == user,
            "complete": open && t.responsible_id == user,
            "createResult": member,
            "resultRead": member,
            "resultEdit": false,
            "removeResult": false,
            "completeResult": open && t.responsible_id == user,
        },
    });
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A user relation's object with the `fields` asked for (absent facts are `null`).
fn user_object(world: &World, id: i64, fields: &[&str]) -> Value {
    let user = world.user(id);
    let all = json!({
        "id": id,
        "name": user.map(|u| u.name()),
        "email": user.map(|_| format!("user{id}@sandbox.example")),
    });
    let object: Map<String, Value> = fields
        .iter()
        .map(|f| {
            (
                (*f).to_string(),
                all.get(*f).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    Value::Object(object)
}

/// `tasks.task.get`: `{"item":{…}}`.
///
/// Omitted or empty `select` returns every own field. Unknown own fields are silently
/// dropped (docs/bitrix24-api.md#list-rules); `chat.*`, `creator.*` and `responsible.*`
/// come back nested under their relation; any other dotted name is UNKNOWNDTOPROPERTY on
/// `select`. A missing task (or an id ≤ 0) is 400 ENTITYNOTFOUND, a task the user is not
/// a member of 403 on `id`.
pub(super) fn get(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let id = match int_param(params, "id") {
        IntParam::Missing => {
            return Err(
                V3Error::request_field("id", "Required field `id` is not specified").into(),
            );
        }
        IntParam::WrongType => return Err(V3Error::wrong_type("id", "int").into()),
        IntParam::Int(id) => id,
    };
    let (own, related) = parse_select(present(params, "select"))?;
    let Some(task) = world.tasks.get(&id) else {
        return Err(V3Error::new(
            400,
            ENTITY_NOT_FOUND,
            format!("Record with ID = `{id}` not found"),
        )
        .into());
    };
    if !world.can_read_task(id, ctx.user) {
        return Err(V3Error::access_denied("id").into());
    }
    let full = task_item(world, task, ctx.user);
    let mut item: Map<String, Value> = full
        .into_iter()
        .filter(|(k, _)| own.contains(&k.as_str()))
        .collect();
    for (relation, fields) in related {
        let object = match relation {
            "chat" => {
                let all =
                    json!({ "id": task.chat_id, "entityId": task.id, "entityType": "TASKS_TASK" });
                let nested: Map<String, Value> = fields
                    .iter()
                    .filter_map(|f| all.get(*f).map(|v| ((*f).to_string(), v.clone())))
                    .collect();
                Value::Object(nested)
            }
            "creator" => user_object(world, task.creator_id, &fields),
            _ => user_object(world, task.responsible_id, &fields),
        };
        item.insert(relation.to_string(), object);
    }
    Ok(json!({ "item": item }))
}

/// Own fields, and the fields of each relation named (in the order first named).
type Selection = (Vec<&'static str>, Vec<(&'static str, Vec<&'static str>)>);

fn parse_select(select: Option<&Value>) -> Result<Selection, V3Error> {
    let invalid = || {
        V3Error::on_field(
            INVALID_SELECT,
            "select",
            "Unable to recognize the select expression",
        )
    };
    let names = match select {
        None => return Ok((TASK_FIELDS.to_vec(), Vec::new())),
        Some(Value::Array(names)) if names.is_empty() => {
            return Ok((TASK_FIELDS.to_vec(), Vec::new()));
        }
        Some(Value::Array(names)) => names,
        Some(_) => return Err(invalid()),
    };
    let mut own = Vec::new();
    let mut related: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for name in names {
        let Value::String(name) = name else {
            return Err(invalid());
        };
        if let Some((relation, field)) = name.split_once('.') {
            let known = RELATIONS
                .iter()
                .find(|(r, _)| *r == relation)
                .and_then(|(r, fields)| fields.iter().find(|f| **f == field).map(|f| (*r, *f)));
            let Some((relation, field)) = known else {
                return Err(V3Error::unknown_property("select", name, "TaskDto"));
            };
            match related.iter_mut().find(|(r, _)| *r == relation) {
                Some((_, fields)) if !fields.contains(&field) => fields.push(field),
                Some(_) => {}
                None => related.push((relation, vec![field])),
            }
        } else if let Some(f) = TASK_FIELDS.iter().find(|f| **f == name) {
            own.push(*f);
        }
    }
    Ok((own, related))
}

/// `tasks.task.chat.message.send`: posts to the task chat; `{"result":true}` without a
/// message id (docs/bitrix24-api.md#task-chat). Missing or inaccessible tasks are 403 on `taskId`.
pub(super) fn chat_message_send(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let fields = match present(params, "fields") {
        Some(Value::Object(m)) => m,
        None => {
            return Err(V3Error::request_field(
                "fields",
                "The required field `fields` is not specified",
            )
            .into());
        }
        Some(_) => return Err(V3Error::wrong_type("fields", "array").into()),
    };
    let task_id = match int_param(fields, "taskId") {
        IntParam::Int(id) => Some(id),
        IntParam::Missing => None,
        IntParam::WrongType => return Err(V3Error::wrong_type("taskId", "int").into()),
    };
    let text = match present(fields, "text") {
        Some(Value::String(s)) => Some(s.clone()),
        None => None,
        Some(_) => return Err(V3Error::wrong_type("text", "string").into()),
    };
    let mut violations = Vec::new();
    if task_id.is_none() {
        violations.push(Violation::on(
            "taskId",
            "The required field \"taskId\" is not filled",
        ));
    }
    if text.as_deref().is_none_or(|t| t.trim().is_empty()) {
        violations.push(Violation::on(
            "text",
            "The required field \"text\" is not filled",
        ));
    }
    let (Some(task_id), Some(text), true) = (task_id, text, violations.is_empty()) else {
        let mut e = V3Error::dto(violations);
        e.message = "Error during object validation".to_string();
        return Err(e.into());
    };
    if !world.can_read_task(task_id, ctx.user) {
        return Err(V3Error::access_denied("taskId").into());
    }
    let chat_id = world
        .tasks
        .get(&task_id)
        .map(|t| t.chat_id)
        .unwrap_or_default();
    world.add_message(chat_id, ctx.user, text, ctx.now);
    Ok(json!({ "result": true }))
}
