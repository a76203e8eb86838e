//! The old v1 `tasks.task.result.list` (docs/bitrix24-api.md#old-v1-list), emulated so that a client calling
//! `/rest/` by mistake gets the v1 array shape instead of the REST 3.0 one.

use serde_json::{Map, Value, json};

use super::Ctx;
use super::im::{v1_int, v1_param};
use crate::sandbox::reply::{ApiError, V1Error};
use crate::sandbox::time;
use crate::sandbox::world::{ResultStatus, World};

/// `{"taskId":N}` → `[{"id","taskId","commentId","createdBy","createdAt","updatedAt",
/// "status":0|1,"text","formattedText","files"}]`. Errors: `100` for a bad `taskId`,
/// `0` "Access denied." for a task the user cannot read (both HTTP 400).
pub(super) fn result_list(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let raw = v1_param(params, "taskId");
    let Some(task_id) = raw.and_then(v1_int) else {
        let shown = raw.map(|v| v.to_string()).unwrap_or_default();
        return Err(V1Error::new(
            400,
            "100",
            format!("Invalid value {shown} to match with parameter {{taskId}}. Should be value of type int."),
        )
        .into());
    };
    if !world.can_read_task(task_id, ctx.user) {
        return Err(V1Error::new(400, "0", "Access denied.").into());
    }
    let items: Vec<Value> = world
        .results
        .values()
        .filter(|r| r.task_id == task_id)
        .map(|r| {
            json!({
                "id": r.id,
                "taskId": r.task_id,
                "commentId": 0,
                "createdBy": r.author_id,
                "createdAt": time::portal_datetime(r.created_at),
                "updatedAt": r.updated_at.map(time::portal_datetime),
                "status": i32::from(r.status == ResultStatus::Closed),
                "text": r.text,
                "formattedText": r.text,
                "files": r.file_ids,
            })
        })
        .collect();
    Ok(Value::Array(items))
}
