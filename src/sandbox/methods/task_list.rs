//! v1 `tasks.task.list` (scope `task`), from docs api-reference/tasks/tasks-task-list.md
//! (English and Russian pages) and fields.md.
//!
//! - `filter`: `{"KEY": value}`, a key optionally prefixed by an operator: `=`, `!`
//!   (not equal; not in, for an array), `<`, `<=`, `>`, `>=`, and `%`/`!%` (contains /
//!   does not contain, case-insensitive: the substring form of the docs' "search by
//!   pattern [%_]"). A value is one value or an array (any of them). Plain `TITLE` is
//!   matched as a LIKE pattern (`%` any run, `_` one character), case-insensitively.
//!   Modelled keys: ID, TITLE, CREATED_BY, RESPONSIBLE_ID, MEMBER (any role: creator,
//!   responsible, participant, observer; CTasks' own key, not on the docs page), ACCOMPLICE,
//!   AUDITOR, REAL_STATUS, STATUS (with the meta statuses -1 overdue, -2 unviewed, -3
//!   almost overdue), DEADLINE, CREATED_DATE, CHANGED_DATE, CLOSED_DATE. The other
//!   documented keys (GROUP_ID, PRIORITY, TAG, …) and `::`-keys are accepted and do not
//!   narrow anything (the sandbox has no groups, tags or priorities).
//! - `order`: `{"FIELD":"asc"|"desc"}` applied in the order written; default `ID` desc;
//!   an empty deadline sorts last ascending. A field the docs do not list is 400 `0`
//!   "Invalid sorting key (internal error)", the page's only documented error.
//! - `select`: field names; omitted or empty, every modelled field; unknown names are
//!   dropped. Answers use the documented camelCase keys with ids and numbers as strings
//!   (`"id":"8017"`, `"status":"2"`), `responsible`/`creator` objects beside the ids.
//! - `params.WITH_RESULT_INFO` adds `taskRequireResult`, `taskHasOpenResult`, `taskHasResult`.
//! - `start`: records to skip, rounded down to a page of 50 (the page size is fixed);
//!   `-1` leaves out the count. The envelope has `total` and, when more follow, `next`.
//!
//! Sandbox choices where the docs are silent: an unknown filter key (a bad operator makes
//! one: `?TITLE`) is 400 `0` "Invalid filter key (internal error)", a date it cannot read
//! 400 `0`; a parameter of the wrong JSON type is 400 `100`, as other v1 methods answer.
//! Only tasks the caller may read are listed (docs: "others see only the tasks available
//! to them"); a list never refuses for one hidden task.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::Ctx;
use super::im::{v1_int, v1_param};
use crate::sandbox::params::order_keys;
use crate::sandbox::reply::{ApiError, V1Error, with_envelope};
use crate::sandbox::time;
use crate::sandbox::world::{Task, World};

/// The fixed page size.
const PAGE: usize = 50;

/// Filter keys the docs list that the sandbox does not model: accepted, no effect.
const UNMODELLED_FILTERS: [&str; 16] = [
    "PARENT_ID",
    "GROUP_ID",
    "STATUS_CHANGED_BY",
    "PRIORITY",
    "FORUM_TOPIC_ID",
    "TAG",
    "MARK",
    "SITE_ID",
    "ADD_IN_REPORT",
    "DATE_START",
    "DEPENDS_ON",
    "ONLY_ROOT_TASKS",
    "STAGE_ID",
    "SPRINT_ID",
    "BACKLOG_ID",
    "UF_CRM_TASK",
];

/// Sort keys the docs list that the sandbox does not model: accepted, no effect.
const UNMODELLED_ORDERS: [&str; 18] = [
    "TIME_SPENT_IN_LOGS",
    "DATE_START",
    "ACTIVITY_DATE",
    "START_DATE_PLAN",
    "END_DATE_PLAN",
    "STATUS_COMPLETE",
    "PRIORITY",
    "MARK",
    "CREATED_BY_LAST_NAME",
    "RESPONSIBLE_LAST_NAME",
    "GROUP_ID",
    "TIME_ESTIMATE",
    "ALLOW_CHANGE_DEADLINE",
    "ALLOW_TIME_TRACKING",
    "MATCH_WORK_TIME",
    "FAVORITE",
    "SORTING",
    "IS_PINNED",
];

/// Filter operators, longest first so that `<=` is not read as `<`.
const OPERATORS: [(&str, Op); 9] = [
    ("!%", Op::NotContains),
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("%", Op::Contains),
    ("!", Op::Ne),
    ("=", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    NotContains,
}

/// What a filter key compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Id,
    Title,
    CreatedBy,
    Responsible,
    Member,
    Accomplice,
    Auditor,
    RealStatus,
    Status,
    Deadline,
    Created,
    Changed,
    Closed,
}

fn key_named(name: &str) -> Option<Key> {
    Some(match name {
        "ID" => Key::Id,
        "TITLE" => Key::Title,
        "CREATED_BY" => Key::CreatedBy,
        "RESPONSIBLE_ID" => Key::Responsible,
        "MEMBER" => Key::Member,
        "ACCOMPLICE" => Key::Accomplice,
        "AUDITOR" => Key::Auditor,
        "REAL_STATUS" => Key::RealStatus,
        "STATUS" => Key::Status,
        "DEADLINE" => Key::Deadline,
        "CREATED_DATE" => Key::Created,
        "CHANGED_DATE" => Key::Changed,
        "CLOSED_DATE" => Key::Closed,
        _ => return None,
    })
}

/// One condition of the filter.
struct Condition {
    key: Key,
    op: Op,
    values: Vec<Value>,
}

fn error_0(description: impl Into<String>) -> ApiError {
    V1Error::new(400, "0", description).into()
}

/// The engine's type error (`100`), as other v1 methods answer it.
fn wrong_type(param: &str, value: &Value, ty: &str) -> ApiError {
    let shown: String = value.to_string().chars().take(100).collect();
    V1Error::new(
        400,
        "100",
        format!("Invalid value {shown} to match with parameter {{{param}}}. Should be value of type {ty}."),
    )
    .into()
}

fn parse_filter(filter: Option<&Value>) -> Result<Vec<Condition>, ApiError> {
    let map = match filter {
        None => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        // PHP sends an empty filter as `[]`.
        Some(Value::Array(a)) if a.is_empty() => return Ok(Vec::new()),
        Some(other) => return Err(wrong_type("filter", other, "array")),
    };
    let mut conditions = Vec::new();
    for (raw, value) in map {
        if raw.starts_with("::") {
            continue;
        }
        let upper = raw.to_ascii_uppercase();
        let (op, name) = OPERATORS
            .iter()
            .find_map(|(p, op)| upper.strip_prefix(p).map(|rest| (*op, rest)))
            .unwrap_or((Op::Eq, upper.as_str()));
        if UNMODELLED_FILTERS.contains(&name) {
            continue;
        }
        let Some(key) = key_named(name) else {
            return Err(error_0(format!(
                "Invalid filter key `{}` (internal error)",
                raw.chars().take(64).collect::<String>()
            )));
        };
        let values = match value {
            Value::Array(a) => a.clone(),
            v => vec![v.clone()],
        };
        if matches!(
            key,
            Key::Deadline | Key::Created | Key::Changed | Key::Closed
        ) {
            for v in &values {
                if !v.is_null() && date_value(v).is_none() {
                    return Err(error_0(format!(
                        "Invalid date {} for filter key `{name}` (internal error)",
                        v.to_string().chars().take(64).collect::<String>()
                    )));
                }
            }
        }
        conditions.push(Condition { key, op, values });
    }
    Ok(conditions)
}

fn date_value(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => time::parse_portal_datetime(s),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// `%` any run of characters, `_` one; case-insensitive.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&t, &p)
}

/// The meta status of `STATUS` (`subStatus`): -1 overdue, -3 almost overdue (a day
/// left), else the real status.
fn sub_status(t: &Task, now: i64) -> i64 {
    let open = !matches!(t.real_status(), 5 | 7);
    match t.deadline {
        Some(d) if open && d < now => -1,
        Some(d) if open && d < now + 24 * 3600 => -3,
        _ => t.real_status(),
    }
}

fn matches(t: &Task, c: &Condition, now: i64) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let any = |f: &dyn Fn(&Value) -> bool| c.values.iter().any(f);
    match c.key {
        Key::Title => {
            let title = t.title.to_lowercase();
            match c.op {
                Op::Contains => any(&|v| title.contains(&text(v).to_lowercase())),
                Op::NotContains => !any(&|v| title.contains(&text(v).to_lowercase())),
                Op::Ne => !any(&|v| like(&t.title, &text(v))),
                _ => any(&|v| like(&t.title, &text(v))),
            }
        }
        Key::Member | Key::Accomplice | Key::Auditor => {
            let set = match c.key {
                Key::Member => t.member_ids.clone(),
                Key::Accomplice => t.accomplice_ids(),
                _ => t.auditor_ids.clone(),
            };
            let hit = any(&|v| v1_int(v).is_some_and(|id| set.contains(&id)));
            if matches!(c.op, Op::Ne | Op::NotContains) {
                !hit
            } else {
                hit
            }
        }
        Key::Deadline | Key::Created | Key::Changed | Key::Closed => {
            let own = match c.key {
                Key::Deadline => t.deadline,
                Key::Created => Some(t.created),
                Key::Changed => Some(t.changed),
                _ => t.closed,
            };
            compare(own, c, &|v| date_value(v))
        }
        Key::Id | Key::CreatedBy | Key::Responsible | Key::RealStatus | Key::Status => {
            let own = match c.key {
                Key::Id => t.id,
                Key::CreatedBy => t.creator_id,
                Key::Responsible => t.responsible_id,
                Key::RealStatus => t.real_status(),
                _ => {
                    // The meta statuses are matched as such; real ones as the real status.
                    let sub = sub_status(t, now);
                    if c.values.iter().any(|v| v1_int(v).is_some_and(|n| n < 0)) {
                        sub
                    } else {
                        t.real_status()
                    }
                }
            };
            compare(Some(own), c, &v1_int)
        }
    }
}

/// `own` against the condition's values: equal to any (`!`: to none), or ordered against
/// the first. An empty own value equals only `null`/`""` and is never ordered.
fn compare(own: Option<i64>, c: &Condition, read: &dyn Fn(&Value) -> Option<i64>) -> bool {
    let empty = |v: &Value| v.is_null() || v.as_str().is_some_and(str::is_empty);
    let equal = |v: &Value| match (own, read(v)) {
        (Some(a), Some(b)) => a == b,
        (None, _) => empty(v),
        _ => false,
    };
    match c.op {
        Op::Eq | Op::Contains => c.values.iter().any(equal),
        Op::Ne | Op::NotContains => !c.values.iter().any(equal),
        op => {
            let (Some(a), Some(b)) = (own, c.values.first().and_then(read)) else {
                return false;
            };
            match op {
                Op::Lt => a < b,
                Op::Le => a <= b,
                Op::Gt => a > b,
                _ => a >= b,
            }
        }
    }
}

/// A sort key and whether it descends.
type Sort = (String, bool);

fn parse_order(params: &Map<String, Value>, body: &[u8]) -> Result<Vec<Sort>, ApiError> {
    let order = match v1_param(params, "order") {
        None => return Ok(vec![("ID".into(), true)]),
        Some(Value::Object(m)) => m,
        Some(Value::Array(a)) if a.is_empty() => return Ok(vec![("ID".into(), true)]),
        Some(other) => return Err(wrong_type("order", other, "array")),
    };
    // The keys in the order written when the body is JSON; else the map's.
    let mut keys = order_keys(body);
    if keys.is_empty() || keys.len() != order.len() {
        keys = order.keys().cloned().collect();
    }
    let mut sorts = Vec::new();
    for key in keys {
        let upper = key.to_ascii_uppercase();
        let direction = order.get(&key).and_then(Value::as_str).unwrap_or("asc");
        let known = [
            "ID",
            "TITLE",
            "DEADLINE",
            "CREATED_DATE",
            "CHANGED_DATE",
            "CLOSED_DATE",
            "REAL_STATUS",
            "STATUS",
        ];
        if UNMODELLED_ORDERS.contains(&upper.as_str()) {
            continue;
        }
        if !known.contains(&upper.as_str()) {
            return Err(error_0("Invalid sorting key (internal error)"));
        }
        sorts.push((upper, direction.eq_ignore_ascii_case("desc")));
    }
    Ok(sorts)
}

fn sort_cmp(a: &Task, b: &Task, sorts: &[Sort]) -> Ordering {
    for (key, desc) in sorts {
        // Dates may be empty: an empty one sorts last ascending (first descending).
        let dates = |t: &Task| match key.as_str() {
            "DEADLINE" => t.deadline,
            "CLOSED_DATE" => t.closed,
            "CREATED_DATE" => Some(t.created),
            _ => Some(t.changed),
        };
        let ord = match key.as_str() {
            "ID" => a.id.cmp(&b.id),
            "TITLE" => a.title.to_lowercase().cmp(&b.title.to_lowercase()),
            "REAL_STATUS" | "STATUS" => a.real_status().cmp(&b.real_status()),
            _ => match (dates(a), dates(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (None, None) => Ordering::Equal,
            },
        };
        let ord = if *desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// The fields `select` names, upper case; every modelled one when omitted or empty.
fn parse_select(params: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    const ALL: [&str; 12] = [
        "ID",
        "TITLE",
        "DESCRIPTION",
        "STATUS",
        "CREATED_BY",
        "CREATED_DATE",
        "RESPONSIBLE_ID",
        "CHANGED_DATE",
        "CLOSED_DATE",
        "DEADLINE",
        "ACCOMPLICES",
        "AUDITORS",
    ];
    let names = match v1_param(params, "select") {
        None => return Ok(ALL.map(String::from).to_vec()),
        Some(Value::Array(a)) if a.is_empty() => return Ok(ALL.map(String::from).to_vec()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(wrong_type("select", other, "array")),
    };
    Ok(names
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_ascii_uppercase)
        .collect())
}

/// A user object as v1 task answers carry it.
fn user_json(world: &World, id: i64) -> Value {
    json!({
        "id": id.to_string(),
        "name": world.user(id).map(|u| u.name()).unwrap_or_default(),
        "link": format!("/company/personal/user/{id}/"),
        "icon": "/bitrix/images/tasks/default_avatar.png",
        "workPosition": "",
    })
}

fn item(world: &World, t: &Task, select: &[String], with_results: bool, now: i64) -> Value {
    let date = |d: Option<i64>| d.map_or(Value::Null, |d| json!(time::portal_datetime(d)));
    let ids = |v: &[i64]| json!(v.iter().map(i64::to_string).collect::<Vec<_>>());
    let mut out = Map::new();
    for field in select {
        let mut put = |k: &str, v: Value| {
            out.insert(k.to_string(), v);
        };
        match field.as_str() {
            "ID" => put("id", json!(t.id.to_string())),
            "TITLE" => put("title", json!(t.title)),
            "DESCRIPTION" => put("description", json!("")),
            "STATUS" => {
                put("status", json!(t.real_status().to_string()));
                put("subStatus", json!(sub_status(t, now).to_string()));
            }
            "CREATED_BY" => {
                put("createdBy", json!(t.creator_id.to_string()));
                put("creator", user_json(world, t.creator_id));
            }
            "RESPONSIBLE_ID" => {
                put("responsibleId", json!(t.responsible_id.to_string()));
                put("responsible", user_json(world, t.responsible_id));
            }
            "CREATED_DATE" => put("createdDate", date(Some(t.created))),
            "CHANGED_DATE" => put("changedDate", date(Some(t.changed))),
            "CLOSED_DATE" => put("closedDate", date(t.closed)),
            "DEADLINE" => put("deadline", date(t.deadline)),
            "ACCOMPLICES" => put("accomplices", ids(&t.accomplice_ids())),
            "AUDITORS" => put("auditors", ids(&t.auditor_ids)),
            _ => {}
        }
    }
    if with_results {
        let results: Vec<_> = world
            .results
            .values()
            .filter(|r| r.task_id == t.id)
            .collect();
        let yn = |b: bool| json!(if b { "Y" } else { "N" });
        out.insert("taskRequireResult".into(), yn(t.require_result));
        out.insert(
            "taskHasOpenResult".into(),
            yn(results
                .iter()
                .any(|r| r.status == crate::sandbox::world::ResultStatus::Open)),
        );
        out.insert("taskHasResult".into(), yn(!results.is_empty()));
    }
    Value::Object(out)
}

/// `tasks.task.list`: `{"tasks":[…]}` with `total` and `next` in the envelope.
pub(super) fn list(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let conditions = parse_filter(v1_param(params, "filter"))?;
    let sorts = parse_order(params, ctx.body)?;
    let select = parse_select(params)?;
    let with_results = v1_param(params, "params")
        .and_then(Value::as_object)
        .and_then(|p| {
            p.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("WITH_RESULT_INFO"))
        })
        .is_some_and(|(_, v)| !matches!(v, Value::Bool(false) | Value::Null) && v != "N");
    let start = match v1_param(params, "start") {
        None => Some(0),
        Some(v) => match v1_int(v) {
            Some(-1) => None,
            Some(n) => Some(usize::try_from(n).unwrap_or(0) / PAGE * PAGE),
            None => return Err(wrong_type("start", v, "int")),
        },
    };
    let mut found: Vec<&Task> = world
        .tasks
        .values()
        .filter(|t| t.member_ids.contains(&ctx.user))
        .filter(|t| conditions.iter().all(|c| matches(t, c, ctx.now)))
        .collect();
    found.sort_by(|a, b| sort_cmp(a, b, &sorts));
    let total = found.len();
    let offset = start.unwrap_or(0);
    let tasks: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(PAGE)
        .map(|t| item(world, t, &select, with_results, ctx.now))
        .collect();
    let mut extras = Map::new();
    if start.is_some() {
        extras.insert("total".into(), json!(total));
        if offset + PAGE < total {
            extras.insert("next".into(), json!(offset + PAGE));
        }
    }
    Ok(with_envelope(json!({ "tasks": tasks }), extras))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("Fix the login page", "%LOGIN%"));
        assert!(like("Счёт для клиента", "счёт%"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("exact", "exact"));
        assert!(!like("exactly", "exact"));
    }

    #[test]
    fn operators_are_read_longest_first() {
        let f = json!({"!%TITLE": "x", ">=DEADLINE": "2026-01-01", "!REAL_STATUS": [5, 7], "%title": "y", "::SUBFILTER-PARAMS": {"FAVORITE": "Y"}, "GROUP_ID": 3});
        let c = parse_filter(Some(&f)).unwrap();
        let ops: Vec<(Key, Op)> = c.iter().map(|c| (c.key, c.op)).collect();
        assert!(ops.contains(&(Key::Title, Op::NotContains)));
        assert!(ops.contains(&(Key::Deadline, Op::Ge)));
        assert!(ops.contains(&(Key::RealStatus, Op::Ne)));
        assert!(ops.contains(&(Key::Title, Op::Contains)));
        assert_eq!(c.len(), 4);
        for bad in [
            json!({"?TITLE": "x"}),
            json!({"NOPE": 1}),
            json!({"DEADLINE": "soon"}),
        ] {
            let Err(ApiError::V1(e)) = parse_filter(Some(&bad)) else {
                panic!("{bad} accepted");
            };
            assert_eq!((e.status, e.code.as_str()), (400, "0"));
        }
        assert!(matches!(
            parse_filter(Some(&json!("x"))),
            Err(ApiError::V1(V1Error { ref code, .. })) if code == "100"
        ));
    }
}
