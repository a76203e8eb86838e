//! `tasks.task.result.list` (REST 3.0, docs/bitrix24-api.md#list and #list-rules): filter, select, order,
//! pagination.
//!
//! Check order: filter → required `taskId` → select → order → pagination → access.
//! Over 400 lines because the list rules of docs/bitrix24-api.md#list (every filter operator, select,
//! order and page bound) are one method, checked in the order the portal checks them.

use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::sandbox::params;
use crate::sandbox::reply::{
    ApiError, INVALID_FILTER, INVALID_ORDER, INVALID_PAGINATION, INVALID_SELECT,
    REQUEST_FILTER_VALIDATION, UNKNOWN_FILTER_OPERATOR, V3Error,
};
use crate::sandbox::world::{RESULT_FIELDS, TaskResult, World};

const ENTITY: &str = "ResultDto";

/// Sandbox choice (undocumented for this method): default `limit` 50, maximum 1000, as on
/// `tasks.task.list`; a larger limit is INVALIDPAGINATION rather than silently clamped.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1000;

/// A comparable value of a filter or sort field.
#[derive(Clone, Debug, PartialEq)]
enum Scalar {
    Null,
    Int(i64),
    Str(String),
}

impl Scalar {
    /// Same-kind comparison; `Null` sorts before everything (sandbox choice for ordering).
    fn cmp_sort(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Null, Scalar::Null) => Ordering::Equal,
            (Scalar::Null, _) => Ordering::Less,
            (_, Scalar::Null) => Ordering::Greater,
            (Scalar::Int(a), Scalar::Int(b)) => a.cmp(b),
            (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
            (Scalar::Int(_), Scalar::Str(_)) => Ordering::Less,
            (Scalar::Str(_), Scalar::Int(_)) => Ordering::Greater,
        }
    }

    /// Comparison for filters: `Null` only equals `Null` and is not ordered.
    fn cmp_filter(&self, other: &Scalar) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Null, Scalar::Null) => Some(Ordering::Equal),
            (Scalar::Int(a), Scalar::Int(b)) => Some(a.cmp(b)),
            (Scalar::Str(a), Scalar::Str(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// Filterable fields (docs/bitrix24-api.md#list).
#[derive(Clone, Copy, Debug, PartialEq)]
enum FilterField {
    TaskId,
    Id,
    AuthorId,
    Status,
    MessageId,
}

impl FilterField {
    fn parse(name: &str) -> Option<FilterField> {
        Some(match name {
            "taskId" => FilterField::TaskId,
            "id" => FilterField::Id,
            "authorId" => FilterField::AuthorId,
            "status" => FilterField::Status,
            "messageId" => FilterField::MessageId,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            FilterField::TaskId => "taskId",
            FilterField::Id => "id",
            FilterField::AuthorId => "authorId",
            FilterField::Status => "status",
            FilterField::MessageId => "messageId",
        }
    }

    fn value_of(self, r: &TaskResult) -> Scalar {
        match self {
            FilterField::TaskId => Scalar::Int(r.task_id),
            FilterField::Id => Scalar::Int(r.id),
            FilterField::AuthorId => Scalar::Int(r.author_id),
            FilterField::Status => Scalar::Str(r.status.as_str().to_string()),
            FilterField::MessageId => r.message_id.map_or(Scalar::Null, Scalar::Int),
        }
    }

    /// Converts a filter value, enforcing the field's type (REQUESTVALIDATION on the field).
    fn scalar(self, v: &Value) -> Result<Scalar, V3Error> {
        match (self, v) {
            (FilterField::Status, Value::String(s)) => Ok(Scalar::Str(s.clone())),
            (FilterField::Status, _) => Err(type_error(self, "string")),
            (FilterField::MessageId, Value::Null) => Ok(Scalar::Null),
            (_, Value::Number(n)) => n
                .as_i64()
                .map(Scalar::Int)
                .ok_or_else(|| type_error(self, "int")),
            _ => Err(type_error(self, "int")),
        }
    }
}

fn type_error(field: FilterField, ty: &str) -> V3Error {
    let name = field.name();
    V3Error::request_field(
        name,
        format!("The `{name}` field requires an `{ty}` data type for this request"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    Between,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s.to_ascii_lowercase().as_str() {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "in" => Op::In,
            "between" => Op::Between,
            _ => return None,
        })
    }
}

enum Expr {
    Cond {
        field: FilterField,
        op: Op,
        values: Vec<Scalar>,
    },
    All(Vec<Expr>),
    Any(Vec<Expr>),
}

impl Expr {
    fn matches(&self, r: &TaskResult) -> bool {
        match self {
            Expr::All(items) => items.iter().all(|e| e.matches(r)),
            Expr::Any(items) => items.iter().any(|e| e.matches(r)),
            Expr::Cond { field, op, values } => {
                let actual = field.value_of(r);
                let cmp = |i: usize| values.get(i).and_then(|v| actual.cmp_filter(v));
                match op {
                    Op::Eq => cmp(0) == Some(Ordering::Equal),
                    Op::Ne => cmp(0) != Some(Ordering::Equal),
                    Op::Gt => cmp(0) == Some(Ordering::Greater),
                    Op::Ge => matches!(cmp(0), Some(Ordering::Greater | Ordering::Equal)),
                    Op::Lt => cmp(0) == Some(Ordering::Less),
                    Op::Le => matches!(cmp(0), Some(Ordering::Less | Ordering::Equal)),
                    Op::In => values
                        .iter()
                        .any(|v| actual.cmp_filter(v) == Some(Ordering::Equal)),
                    Op::Between => {
                        matches!(cmp(0), Some(Ordering::Greater | Ordering::Equal))
                            && matches!(cmp(1), Some(Ordering::Less | Ordering::Equal))
                    }
                }
            }
        }
    }
}

fn invalid_filter() -> V3Error {
    V3Error::on_field(
        INVALID_FILTER,
        "filter",
        "Unable to recognize the filter expression",
    )
}

/// Parses the top-level filter array and returns the `taskId` values of plain top-level
/// equality conditions (the only form the [SRC] controller reads, docs/bitrix24-api.md#list).
fn parse_filter(filter: Option<&Value>) -> Result<(Expr, Vec<i64>), V3Error> {
    let empty = || V3Error::request_field("filter", "The field value cannot be empty");
    let items = match filter {
        None | Some(Value::Null) => return Err(empty()),
        Some(Value::Array(items)) if items.is_empty() => return Err(empty()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid_filter()),
    };
    let nodes = items
        .iter()
        .map(parse_node)
        .collect::<Result<Vec<_>, _>>()?;
    let task_ids = nodes
        .iter()
        .filter_map(|n| match n {
            Expr::Cond {
                field: FilterField::TaskId,
                op: Op::Eq,
                values,
            } => match values.as_slice() {
                [Scalar::Int(id)] => Some(*id),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok((Expr::All(nodes), task_ids))
}

/// A condition array or a `{"logic":"and"|"or","conditions":[…]}` group (docs/bitrix24-api.md#list-rules).
fn parse_node(node: &Value) -> Result<Expr, V3Error> {
    match node {
        Value::Array(parts) => parse_condition(parts),
        Value::Object(group) => {
            let any = match group.get("logic") {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("and") => false,
                Some(Value::String(s)) if s.eq_ignore_ascii_case("or") => true,
                Some(_) => return Err(invalid_filter()),
            };
            let Some(Value::Array(conditions)) = group.get("conditions") else {
                return Err(invalid_filter());
            };
            if conditions.is_empty() {
                return Err(invalid_filter());
            }
            let items = conditions
                .iter()
                .map(parse_node)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if any {
                Expr::Any(items)
            } else {
                Expr::All(items)
            })
        }
        _ => Err(invalid_filter()),
    }
}

/// `[field, value]` (`=`, or `in` when the value is an array) or `[field, op, value]`.
fn parse_condition(parts: &[Value]) -> Result<Expr, V3Error> {
    let (name, op, value) = match parts {
        [name, value] => {
            let op = if value.is_array() { Op::In } else { Op::Eq };
            (name, op, value)
        }
        [name, op, value] => {
            let Value::String(op) = op else {
                return Err(invalid_filter());
            };
            let op = Op::parse(op).ok_or_else(|| {
                V3Error::on_field(
                    UNKNOWN_FILTER_OPERATOR,
                    "filter",
                    format!("Unknown filter operator `{op}`"),
                )
            })?;
            (name, op, value)
        }
        _ => return Err(invalid_filter()),
    };
    let Value::String(name) = name else {
        return Err(invalid_filter());
    };
    let field = FilterField::parse(name)
        .ok_or_else(|| V3Error::unknown_property("filter", name, ENTITY))?;
    let values = match (op, value) {
        (Op::In, Value::Array(list)) => list
            .iter()
            .map(|v| field.scalar(v))
            .collect::<Result<Vec<_>, _>>()?,
        (Op::Between, Value::Array(list)) if list.len() == 2 => list
            .iter()
            .map(|v| field.scalar(v))
            .collect::<Result<Vec<_>, _>>()?,
        (Op::In | Op::Between, _) | (_, Value::Array(_)) => return Err(invalid_filter()),
        (_, v) => vec![field.scalar(v)?],
    };
    Ok(Expr::Cond { field, op, values })
}

/// What to return per item: own fields in documented order, plus the optional `author`.
struct Projection {
    own: Vec<&'static str>,
    /// `None`: no author; `Some(None)`: the whole author object; `Some(Some(keys))`: subset.
    author: Option<Option<Vec<&'static str>>>,
}

const AUTHOR_FIELDS: [&str; 2] = ["id", "name"];

/// Sandbox choices: omitted or empty `select` returns every item field (docs/bitrix24-api.md#result-item,
/// no `author`); unknown names are UNKNOWNDTOPROPERTY on `select` (as the method page says);
/// a non-array `select` or non-string entries are INVALIDSELECT. `author` is
/// `{"id","name"}` ([UNCONFIRMED] shape); `author.id` / `author.name` select parts of it.
fn parse_select(select: Option<&Value>) -> Result<Projection, V3Error> {
    let all = || Projection {
        own: RESULT_FIELDS.to_vec(),
        author: None,
    };
    let names = match select {
        None | Some(Value::Null) => return Ok(all()),
        Some(Value::Array(names)) if names.is_empty() => return Ok(all()),
        Some(Value::Array(names)) => names,
        Some(_) => {
            return Err(V3Error::on_field(
                INVALID_SELECT,
                "select",
                "Unable to recognize the select expression",
            ));
        }
    };
    let mut wanted: Vec<&str> = Vec::new();
    let mut author: Option<Option<Vec<&'static str>>> = None;
    for name in names {
        let Value::String(name) = name else {
            return Err(V3Error::on_field(
                INVALID_SELECT,
                "select",
                "Unable to recognize the select expression",
            ));
        };
        if name == "author" {
            author = Some(None);
        } else if let Some(sub) = name.strip_prefix("author.") {
            let sub = AUTHOR_FIELDS
                .iter()
                .find(|f| **f == sub)
                .ok_or_else(|| V3Error::unknown_property("select", name, ENTITY))?;
            match &mut author {
                Some(Some(keys)) => keys.push(sub),
                Some(None) => {}
                None => author = Some(Some(vec![sub])),
            }
        } else if RESULT_FIELDS.contains(&name.as_str()) {
            wanted.push(name);
        } else {
            return Err(V3Error::unknown_property("select", name, ENTITY));
        }
    }
    let own = RESULT_FIELDS
        .iter()
        .copied()
        .filter(|f| wanted.contains(f))
        .collect();
    Ok(Projection { own, author })
}

/// Sortable fields (docs/bitrix24-api.md#list).
const SORT_FIELDS: [&str; 6] = [
    "id",
    "authorId",
    "createdAt",
    "updatedAt",
    "status",
    "messageId",
];

fn sort_value(field: &str, r: &TaskResult) -> Option<Scalar> {
    Some(match field {
        "id" => Scalar::Int(r.id),
        "authorId" => Scalar::Int(r.author_id),
        "createdAt" => Scalar::Int(r.created_at),
        "updatedAt" => r.updated_at.map_or(Scalar::Null, Scalar::Int),
        "status" => Scalar::Str(r.status.as_str().to_string()),
        "messageId" => r.message_id.map_or(Scalar::Null, Scalar::Int),
        _ => return None,
    })
}

/// `(field, descending)` keys, applied in request order, then `id` ASC as the tie-break.
///
/// Sandbox choices: default order `id` ASC; directions are case-insensitive `ASC`/`DESC`;
/// a non-object `order` or another direction is INVALIDORDER; an unknown or unsortable field
/// is UNKNOWNDTOPROPERTY on `order`; `null` sorts first in ascending order.
fn parse_order(order: Option<&Value>, body: &[u8]) -> Result<Vec<(String, bool)>, V3Error> {
    let invalid = || {
        V3Error::on_field(
            INVALID_ORDER,
            "order",
            "Unable to recognize the sorting expression",
        )
    };
    let map = match order {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(Value::Array(a)) if a.is_empty() => return Ok(Vec::new()),
        Some(_) => return Err(invalid()),
    };
    let mut keys = params::order_keys(body);
    keys.retain(|k| map.contains_key(k));
    keys.dedup();
    for k in map.keys() {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let mut out = Vec::new();
    for key in keys {
        if !SORT_FIELDS.contains(&key.as_str()) {
            return Err(V3Error::unknown_property("order", &key, ENTITY));
        }
        let desc = match map.get(&key) {
            Some(Value::String(d)) if d.eq_ignore_ascii_case("asc") => false,
            Some(Value::String(d)) if d.eq_ignore_ascii_case("desc") => true,
            _ => return Err(invalid()),
        };
        out.push((key, desc));
    }
    Ok(out)
}

/// `(limit, offset)`.
///
/// Sandbox choices: only JSON integers are accepted; `limit` 1..=1000 (default 50), `offset`
/// ≥ 0; `page` counts from 1 and, when given, replaces `offset` with `(page-1)*limit`
/// (`page: 0` means the first page, as the JS SDK sends it). Anything else, a non-object
/// `pagination` included, is INVALIDPAGINATION. Unknown keys are ignored.
fn parse_pagination(pagination: Option<&Value>) -> Result<(usize, usize), V3Error> {
    let invalid = |v: &Value| {
        V3Error::on_field(
            INVALID_PAGINATION,
            "pagination",
            format!("Unable to recognize the pagination parameter `{v}`"),
        )
    };
    let map = match pagination {
        None | Some(Value::Null) => return Ok((DEFAULT_LIMIT as usize, 0)),
        Some(Value::Object(map)) => map,
        Some(other) => return Err(invalid(other)),
    };
    let int = |key: &str, min: i64, max: i64| -> Result<Option<i64>, V3Error> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(invalid(&Value::Object(map.clone()))),
            },
        }
    };
    let limit = int("limit", 1, MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
    let offset = int("offset", 0, i64::from(u32::MAX))?.unwrap_or(0);
    let offset = match int("page", 0, i64::from(u32::MAX))? {
        Some(page) => (page.max(1) - 1).saturating_mul(limit),
        None => offset,
    };
    Ok((
        usize::try_from(limit).unwrap_or(DEFAULT_LIMIT as usize),
        usize::try_from(offset).unwrap_or(usize::MAX),
    ))
}

fn project(world: &World, r: &TaskResult, user: i64, projection: &Projection) -> Value {
    let full = world.result_item(r, user);
    let mut out = Map::new();
    for key in &projection.own {
        if let Some(v) = full.get(*key) {
            out.insert((*key).to_string(), v.clone());
        }
    }
    if let Some(keys) = &projection.author {
        let author = world
            .user(r.author_id)
            .map(|u| json!({ "id": u.id, "name": u.name() }));
        let author = match (author, keys) {
            (Some(Value::Object(obj)), Some(keys)) => Value::Object(
                obj.into_iter()
                    .filter(|(k, _)| keys.contains(&k.as_str()))
                    .collect(),
            ),
            (Some(a), _) => a,
            (None, _) => Value::Null,
        };
        out.insert("author".to_string(), author);
    }
    Value::Object(out)
}

/// `tasks.task.result.list`. Sandbox choice: a `taskId` that does not exist is treated like
/// a task the user cannot read: 403 ACCESSDENIED on `taskId`.
pub(super) fn list(
    world: &mut World,
    ctx: &Ctx,
    params: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let (filter, task_ids) = parse_filter(params.get("filter"))?;
    if task_ids.is_empty() {
        return Err(V3Error::on_field(
            REQUEST_FILTER_VALIDATION,
            "filter.taskId",
            "A filter for the required field `taskId` must be specified",
        )
        .into());
    }
    let projection = parse_select(params.get("select"))?;
    let order = parse_order(params.get("order"), ctx.body)?;
    let (limit, offset) = parse_pagination(params.get("pagination"))?;
    if task_ids
        .iter()
        .any(|id| !world.can_read_task(*id, ctx.user))
    {
        return Err(V3Error::access_denied("taskId").into());
    }
    let mut rows: Vec<&TaskResult> = world
        .results
        .values()
        .filter(|r| filter.matches(r))
        .collect();
    rows.sort_by(|a, b| {
        for (field, desc) in &order {
            let (Some(x), Some(y)) = (sort_value(field, a), sort_value(field, b)) else {
                continue;
            };
            let ord = x.cmp_sort(&y);
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        a.id.cmp(&b.id)
    });
    let items: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| project(world, r, ctx.user, &projection))
        .collect();
    Ok(json!({ "items": items }))
}
