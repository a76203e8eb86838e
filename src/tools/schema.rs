//! Portable JSON Schemas for tool inputs and outputs.
//!
//! Clients differ in what they accept (Gemini refuses `$schema` and type arrays, some
//! front-ends do not resolve `$ref`, Ajv in strict mode rejects unknown formats), so the
//! schemars output is normalised once: no `$schema`, every `$ref` inlined, `Option<T>`
//! as a plain optional property, enums as a plain `enum` of strings, and only standard
//! `format`s.
//!
//! Served schemas come from `schemas.json` beside this file, which holds the output of
//! [`input`] and [`output`] for every tool: generating them runs schemars and
//! [`normalise`] over a dozen types, the larger part of the first `tools/list`'s work
//! and of the code a stdio server touches before it (issue 23). A test keeps the file
//! equal to the generated schemas (`UPDATE_SCHEMAS=1 cargo test --lib schemas` rewrites it).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

/// Every tool's schemas as generated, by tool name, then `input` and `output`.
const CACHED: &str = include_str!("schemas.json");

/// One tool's entry in [`CACHED`].
#[derive(serde::Deserialize)]
struct Cached {
    input: JsonObject,
    output: JsonObject,
}

/// The cached `[input, output]` schemas of the tool `name`, parsed once and shared;
/// `None` when the file lacks the tool (one added since), and the caller generates them.
pub fn cached(name: &str) -> Option<[Arc<JsonObject>; 2]> {
    static PARSED: OnceLock<BTreeMap<String, [Arc<JsonObject>; 2]>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            let all: BTreeMap<String, Cached> = serde_json::from_str(CACHED).unwrap_or_default();
            all.into_iter()
                .map(|(name, c)| (name, [Arc::new(c.input), Arc::new(c.output)]))
                .collect()
        })
        .get(name)
        .cloned()
}

/// The input schema of `T` (what arguments deserialize into).
pub fn input<T: JsonSchema>() -> Arc<JsonObject> {
    Arc::new(portable(SchemaSettings::draft2020_12(), schemars_for::<T>))
}

/// The output schema of `T` (what the server serialises).
pub fn output<T: JsonSchema>() -> Arc<JsonObject> {
    Arc::new(portable(
        SchemaSettings::draft2020_12().for_serialize(),
        schemars_for::<T>,
    ))
}

fn schemars_for<T: JsonSchema>(settings: SchemaSettings) -> Value {
    // The schema already is a JSON value; serialising it again (schemars' keyword
    // ordering) would only cost start-up time, as serde_json's maps are sorted anyway.
    settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

fn portable(
    mut settings: SchemaSettings,
    make: impl FnOnce(SchemaSettings) -> Value,
) -> JsonObject {
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    let mut raw = make(settings);
    let defs = match raw.as_object_mut().and_then(|o| o.remove("$defs")) {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    let mut out = match normalise(raw, &defs, 0) {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    for key in ["$schema", "$defs", "title", "description"] {
        out.remove(key);
    }
    out.insert("type".into(), "object".into());
    out
}

/// Standard JSON Schema formats; schemars adds non-standard ones (`uint64`, `int32`…).
const STANDARD_FORMATS: [&str; 8] = [
    "date-time",
    "date",
    "time",
    "email",
    "uri",
    "uuid",
    "hostname",
    "ipv4",
];

// Takes the tree by value: every node is moved, not cloned (this runs before the first
// tools/list, so its cost is start-up time).
fn normalise(v: Value, defs: &Map<String, Value>, depth: usize) -> Value {
    // Parameter types are not recursive; the bound only guards against a mistake.
    if depth > 32 {
        return Value::Object(Map::new());
    }
    let mut obj = match v {
        Value::Object(obj) => obj,
        Value::Array(a) => {
            return Value::Array(
                a.into_iter()
                    .map(|x| normalise(x, defs, depth + 1))
                    .collect(),
            );
        }
        other => return other,
    };
    // Inline a $ref, keeping sibling keys such as `description`.
    if let Some(Value::String(r)) = obj.remove("$ref")
        && let Some(Value::Object(def)) = r.strip_prefix("#/$defs/").and_then(|n| defs.get(n))
    {
        let mut merged = def.clone();
        merged.extend(obj);
        obj = merged;
    }
    // `anyOf: [X, {type: null}]` (Option of a complex type) becomes X.
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = obj.get(key) else {
            continue;
        };
        let non_null: Vec<usize> = (0..alts.len())
            .filter(|&i| !is_null_schema(&alts[i]))
            .collect();
        if non_null.len() == 1 && alts.len() == 2 {
            if let Some(Value::Array(mut alts)) = obj.remove(key)
                && let Value::Object(inner) =
                    normalise(alts.swap_remove(non_null[0]), defs, depth + 1)
            {
                for (k, val) in inner {
                    obj.entry(k).or_insert(val);
                }
            }
        } else if let Some(values) = const_strings(alts) {
            obj.remove(key);
            obj.insert("type".into(), "string".into());
            obj.insert("enum".into(), Value::Array(values));
        }
    }
    // `type: [T, "null"]` becomes `type: T`.
    if let Some(Value::Array(types)) = obj.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if kept.len() == 1 {
            obj.insert("type".into(), kept[0].clone());
        } else {
            obj.insert("type".into(), Value::Array(kept));
        }
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if obj.get("default").is_some_and(Value::is_null) {
        obj.remove("default");
    }
    if obj
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
    {
        obj.remove("format");
    }
    obj.remove("$schema");
    obj.remove("$defs");
    Value::Object(
        obj.into_iter()
            .map(|(k, val)| {
                let val = match (k.as_str(), val) {
                    // Maps of name -> schema.
                    ("properties" | "patternProperties", Value::Object(props)) => Value::Object(
                        props
                            .into_iter()
                            .map(|(name, schema)| (name, normalise(schema, defs, depth + 1)))
                            .collect(),
                    ),
                    // A schema, or an array of schemas.
                    (
                        "items"
                        | "additionalProperties"
                        | "anyOf"
                        | "oneOf"
                        | "allOf"
                        | "not"
                        | "prefixItems",
                        val,
                    ) => normalise(val, defs, depth + 1),
                    (_, val) => val,
                };
                (k, val)
            })
            .collect(),
    )
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").is_some_and(|t| t == "null") || v.get("const").is_some_and(Value::is_null)
}

fn const_strings(alts: &[Value]) -> Option<Vec<Value>> {
    alts.iter()
        .map(|a| match (a.get("const"), a.get("enum")) {
            (Some(c @ Value::String(_)), _) => Some(vec![c.clone()]),
            (_, Some(Value::Array(e))) if e.iter().all(Value::is_string) => Some(e.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// Checks the portability rules; returns every violation found (empty = portable).
pub fn violations(schema: &JsonObject) -> Vec<String> {
    let mut out = Vec::new();
    if schema.get("type") != Some(&Value::String("object".into())) {
        out.push("root type is not \"object\"".into());
    }
    for key in ["anyOf", "oneOf", "allOf", "$schema"] {
        if schema.contains_key(key) {
            out.push(format!("root has {key}"));
        }
    }
    walk(&Value::Object(schema.clone()), "", &mut out);
    out
}

fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, val) in o {
                let here = format!("{path}/{k}");
                match k.as_str() {
                    "$ref" | "$defs" | "definitions" | "$schema" | "oneOf" | "anyOf" | "allOf"
                    | "const" | "nullable" => out.push(format!("{here}: {k} is not portable")),
                    "type" if val.is_array() => out.push(format!("{here}: type union {val}")),
                    "type" if val == "null" => out.push(format!("{here}: null type")),
                    "format" if !val.as_str().is_some_and(|f| STANDARD_FORMATS.contains(&f)) => {
                        out.push(format!("{here}: non-standard format {val}"))
                    }
                    "enum"
                        if !val
                            .as_array()
                            .is_some_and(|a| a.iter().all(Value::is_string)) =>
                    {
                        out.push(format!("{here}: enum of non-strings"))
                    }
                    "default" if val.is_null() => out.push(format!("{here}: default null")),
                    _ => {}
                }
                walk(val, &here, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::REGISTRY;

    /// What `schemas.json` must hold: every tool's schemas generated afresh.
    fn generated() -> String {
        let all: Map<String, Value> = REGISTRY
            .iter()
            .map(|tool| {
                let [input, output] = tool.generated_schemas();
                let mut pair = Map::new();
                pair.insert("input".into(), Value::Object((*input).clone()));
                pair.insert("output".into(), Value::Object((*output).clone()));
                (tool.name().to_string(), Value::Object(pair))
            })
            .collect();
        serde_json::to_string_pretty(&all).expect("a map of JSON values serialises") + "\n"
    }

    #[test]
    fn cached_schemas_are_the_generated_ones() {
        let fresh = generated();
        if fresh == CACHED {
            return;
        }
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tools/schemas.json");
            std::fs::write(path, &fresh).expect("write src/tools/schemas.json");
            return;
        }
        panic!(
            "src/tools/schemas.json differs from the generated schemas (a tool's parameter or \
             answer type changed): rewrite it with `UPDATE_SCHEMAS=1 cargo test --lib schemas` \
             and review the diff"
        );
    }

    #[test]
    fn every_tool_is_served_its_cached_schemas() {
        for tool in REGISTRY {
            assert!(cached(tool.name()).is_some(), "{}", tool.name());
        }
    }
}
