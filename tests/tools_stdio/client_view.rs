//! What a model or client sees, snapshotted so that any change shows up as a diff to
//! review (`cargo insta review`): the `initialize` answer (instructions included), the
//! `tools/list` of the default server, under `--read-only` and under `--tools`, and the
//! error text of every error class for every tool. Also that the registry and
//! `tools/list` agree, so adding a tool is one file plus one registry line, and that what
//! else names the tools (manifest.json, the tool tables of README.md and docs/tools.md,
//! the `--read-only` help) agrees with the registry.

use crate::support::common;

use bitrix24_task_results_mcp::bitrix::{
    CallError, ErrorClass, FieldError, PortalError, TransportError, TransportKind,
};
use bitrix24_task_results_mcp::cli::Cli;
use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use bitrix24_task_results_mcp::tools::{Effects, REGISTRY, errors};
use clap::CommandFactory;
use common::*;
use serde_json::{Value, json};

/// The `initialize` answer without the version, which changes with every release.
fn server_view(s: &Session) -> Value {
    let info = s.client.peer_info().expect("initialize answer");
    let mut v = serde_json::to_value(info).unwrap();
    v["serverInfo"]["version"] = json!("[version]");
    v
}

async fn names(s: &Session) -> Vec<String> {
    s.client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test]
async fn initialize_and_tools_list_as_clients_see_them() {
    let (_sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    insta::assert_json_snapshot!("initialize", server_view(&s));
    let listed = names(&s).await;
    // The registry and tools/list agree, in order.
    let registered: Vec<&str> = REGISTRY.iter().map(|t| t.name()).collect();
    assert_eq!(listed, registered);
    let tools = s.client.list_all_tools().await.unwrap();
    for (tool, entry) in tools.iter().zip(REGISTRY) {
        assert_eq!(
            serde_json::to_value(tool).unwrap(),
            serde_json::to_value(entry.definition()).unwrap()
        );
    }
    insta::assert_json_snapshot!("tools_list_default", listed);
    s.close().await;

    let (_sandbox, s) =
        spawn_with_sandbox(SandboxOptions::default(), &[("BITRIX24_READ_ONLY", "true")]).await;
    insta::assert_json_snapshot!("initialize_read_only", server_view(&s));
    insta::assert_json_snapshot!("tools_list_read_only", names(&s).await);
    s.close().await;

    let (_sandbox, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[("BITRIX24_TOOLS", "task_result_list,task_result_add")],
    )
    .await;
    insta::assert_json_snapshot!("initialize_tools", server_view(&s));
    insta::assert_json_snapshot!("tools_list_tools", names(&s).await);
    s.close().await;
}

fn portal(status: u16, code: &str, fields: &[&str]) -> CallError {
    CallError::Portal(PortalError {
        status,
        code: code.into(),
        // Deliberately not English: next steps must not depend on the portal's language.
        message: "Сообщение портала".into(),
        validation: fields
            .iter()
            .map(|f| FieldError {
                field: Some((*f).into()),
                message: "Поле заполнено неверно".into(),
            })
            .collect(),
        operating_reset_at: None,
        retry_after: None,
    })
}

/// One error of every class (and the non-portal failures), with the fields the tools
/// know better than the generic rules.
fn every_error() -> Vec<(&'static str, CallError)> {
    let v3 = |name: &str| format!("BITRIX_REST_V3_EXCEPTION_{name}");
    vec![
        (
            "validation",
            portal(400, &v3("VALIDATION_REQUESTVALIDATIONEXCEPTION"), &[]),
        ),
        (
            "validation_text",
            portal(400, &v3("VALIDATION_DTOVALIDATIONEXCEPTION"), &["text"]),
        ),
        (
            "validation_task_id",
            portal(
                400,
                &v3("VALIDATION_REQUESTVALIDATIONEXCEPTION"),
                &["taskId"],
            ),
        ),
        (
            "validation_message_id",
            portal(
                400,
                &v3("VALIDATION_REQUESTVALIDATIONEXCEPTION"),
                &["messageId"],
            ),
        ),
        (
            "validation_filter_task_id",
            portal(
                400,
                &v3("VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION"),
                &["filter.taskId"],
            ),
        ),
        (
            "not_found",
            portal(400, &v3("ENTITYNOTFOUNDEXCEPTION"), &[]),
        ),
        (
            "access_denied",
            portal(403, &v3("ACCESSDENIEDEXCEPTION"), &["id"]),
        ),
        (
            "insufficient_scope",
            portal(403, &v3("INSUFFICIENTSCOPEEXCEPTION"), &[]),
        ),
        ("expired_token", portal(401, "expired_token", &[])),
        ("bad_credentials", portal(401, "NO_AUTH_FOUND", &[])),
        ("query_limit", portal(503, "QUERY_LIMIT_EXCEEDED", &[])),
        (
            "operation_time_limit",
            portal(429, "OPERATION_TIME_LIMIT", &[]),
        ),
        (
            "method_not_found",
            portal(404, "ERROR_METHOD_NOT_FOUND", &[]),
        ),
        ("portal_unavailable", portal(403, "ACCESS_DENIED", &[])),
        ("internal", portal(500, "INTERNAL_SERVER_ERROR", &[])),
        ("unknown", portal(400, "SOMETHING_NEW", &[])),
        (
            "transport_connect",
            CallError::Transport(TransportError {
                kind: TransportKind::Connect,
                detail: "connection refused".into(),
            }),
        ),
        (
            "transport_timeout",
            CallError::Transport(TransportError {
                kind: TransportKind::Timeout,
                detail: "operation timed out".into(),
            }),
        ),
        (
            "decode",
            CallError::Decode {
                status: 200,
                detail: "expected a JSON object".into(),
            },
        ),
        (
            "budget",
            CallError::Budget("the rate limit queue is full".into()),
        ),
        (
            "oauth_invalid_grant",
            CallError::OAuth {
                code: "invalid_grant".into(),
                detail: "refresh token expired".into(),
            },
        ),
    ]
}

#[test]
fn every_error_text_of_every_tool() {
    let mut seen = serde_json::Map::new();
    for tool in REGISTRY {
        let mut texts = serde_json::Map::new();
        for (name, error) in every_error() {
            let r = errors::call_failed(*tool, tool.method(), "https://portal.example", &error);
            assert_eq!(r.is_error, Some(true));
            texts.insert(name.into(), json!(text(&r)));
        }
        seen.insert(tool.name().into(), Value::Object(texts));
    }
    insta::assert_json_snapshot!("error_texts", seen);
}

#[test]
fn every_class_is_covered_by_the_error_snapshot() {
    let classes: Vec<ErrorClass> = every_error()
        .iter()
        .filter_map(|(_, e)| e.portal().map(|p| p.class()))
        .collect();
    for class in [
        ErrorClass::Validation,
        ErrorClass::NotFound,
        ErrorClass::AccessDenied,
        ErrorClass::InsufficientScope,
        ErrorClass::ExpiredToken,
        ErrorClass::BadCredentials,
        ErrorClass::QueryLimit,
        ErrorClass::OperationTimeLimit,
        ErrorClass::MethodNotFound,
        ErrorClass::PortalUnavailable,
        ErrorClass::Internal,
        ErrorClass::Unknown,
    ] {
        assert!(
            classes.contains(&class),
            "{class:?} has no error in the snapshot"
        );
    }
}

/// The registry's tool names, in listing order.
fn registered() -> Vec<&'static str> {
    REGISTRY.iter().map(|t| t.name()).collect()
}

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn manifest_lists_the_registered_tools() {
    let manifest: Value = serde_json::from_str(&read("manifest.json")).expect("manifest.json");
    let listed: Vec<&str> = manifest["tools"]
        .as_array()
        .expect("manifest.json has a tools array")
        .iter()
        .map(|t| {
            t["name"]
                .as_str()
                .expect("manifest.json: a tool without a name")
        })
        .collect();
    assert_eq!(
        listed,
        registered(),
        "manifest.json's tools (left) disagree with the registry, src/tools/mod.rs REGISTRY (right)"
    );
}

/// The rows of the first Markdown table in `path` after the line `heading` (up to the
/// next `## ` heading), each row's cells trimmed, header and separator left out.
fn tool_table(path: &str, heading: &str) -> Vec<Vec<String>> {
    let text = read(path);
    let start = text
        .lines()
        .position(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("{path}: no line {heading:?}"));
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("## "))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "{path}: no tool table under {heading:?}");
    assert_eq!(
        rows[0][..2],
        ["tool", "REST 3.0 method"],
        "{path}: the table under {heading:?} is not the tool table"
    );
    rows.into_iter().skip(2).collect()
}

/// The hints column a tool with `effects` has in the tool tables.
fn hints(effects: Effects) -> String {
    if effects.read_only {
        return "read-only".into();
    }
    let writes = if effects.destructive {
        "destructive"
    } else {
        "write"
    };
    let repeats = if effects.idempotent {
        "idempotent"
    } else {
        "not idempotent"
    };
    format!("{writes}, {repeats}")
}

fn table_agrees_with_the_registry(path: &str, heading: &str) {
    let rows = tool_table(path, heading);
    let listed: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
    assert_eq!(
        listed,
        registered(),
        "{path}: the tools of the table (left) disagree with the registry, src/tools/mod.rs REGISTRY (right)"
    );
    for (row, tool) in rows.iter().zip(REGISTRY) {
        let name = tool.name();
        assert!(
            row[1].contains(&format!("`{}`", tool.method())),
            "{path}: {name}'s REST method column {:?} does not name its registered method `{}`",
            row[1],
            tool.method()
        );
        assert_eq!(
            row[3],
            hints(tool.effects()),
            "{path}: {name}'s hints (left) disagree with its registered effects {:?} (right)",
            tool.effects()
        );
    }
}

#[test]
fn readme_tool_table_agrees_with_the_registry() {
    table_agrees_with_the_registry("README.md", "## Tools");
}

#[test]
fn docs_tool_table_agrees_with_the_registry() {
    table_agrees_with_the_registry("docs/tools.md", "# Tools");
}

#[test]
fn read_only_help_names_the_read_only_tools() {
    let read_only: Vec<&str> = REGISTRY
        .iter()
        .filter(|t| t.read_only())
        .map(|t| t.name())
        .collect();
    let command = Cli::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some("read-only"))
        .expect("a --read-only flag");
    for help in [arg.get_help(), arg.get_long_help()].into_iter().flatten() {
        let help = help.to_string();
        let named = help
            .split_once("tools (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| list.split(", ").collect::<Vec<_>>())
            .unwrap_or_else(|| {
                panic!("--read-only help names no tools in \"tools (...)\": {help:?}")
            });
        assert_eq!(
            named, read_only,
            "--read-only help (src/cli.rs, left) disagrees with the registry's read-only tools (right)"
        );
        for tool in REGISTRY.iter().filter(|t| !t.read_only()) {
            assert!(
                !help.contains(tool.name()),
                "--read-only help names the write tool {}: {help:?}",
                tool.name()
            );
        }
    }
}
