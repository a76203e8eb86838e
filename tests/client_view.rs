//! What a model or client sees, snapshotted so that any change shows up as a diff to
//! review (`cargo insta review`): the `initialize` answer (instructions included), the
//! `tools/list` of the default server, under `--read-only` and under `--tools`, and the
//! error text of every error class for every tool. Also that the registry and
//! `tools/list` agree, so adding a tool is one file plus one registry line.

mod common;

use bitrix24_task_results_mcp::bitrix::{
    CallError, ErrorClass, FieldError, PortalError, TransportError, TransportKind,
};
use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use bitrix24_task_results_mcp::tools::{REGISTRY, errors};
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
