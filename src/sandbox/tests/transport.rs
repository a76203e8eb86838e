//! Routing, authentication, scopes, body parsing, recording and control endpoints.

use serde_json::json;

use super::*;
use crate::sandbox::{Fault, RecordedRequest};

#[tokio::test]
async fn v3_only_methods_without_api_are_404() {
    let sb = start().await;
    for method in [
        "tasks.task.result.add",
        "tasks.task.result.addfromchatmessage",
        "tasks.task.result.update",
        "tasks.task.result.delete",
    ] {
        let r = post(
            &format!("{}{method}", sb.webhook_url()),
            r#"{"fields":{"taskId":51,"text":"x"}}"#,
            &[],
        )
        .await;
        assert_v1_error(&r, 404, "ERROR_METHOD_NOT_FOUND");
        assert_eq!(r.json["error_description"], "Method not found!");
    }
    assert_eq!(sb.results().len(), 2);
}

#[tokio::test]
async fn unknown_v3_method_is_method_not_found() {
    let sb = start().await;
    let r = v3(&sb, "crm.item.list", json!({})).await;
    assert_v3_error(
        &r,
        400,
        "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION",
        None,
    );
    // v1-only methods are not REST 3.0 methods either.
    let r = v3(
        &sb,
        "im.dialog.messages.get",
        json!({"DIALOG_ID": "chat2537"}),
    )
    .await;
    assert_v3_error(
        &r,
        400,
        "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION",
        None,
    );
}

#[tokio::test]
async fn method_names_case_insensitive_with_trailing_slash() {
    let sb = start().await;
    let r = post(
        &v3_url(&sb, "Tasks.Task.Result.List/"),
        r#"{"filter":[["taskId",51]]}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        &format!("{}IM.Dialog.Messages.Get/", sb.webhook_url()),
        r#"{"DIALOG_ID":"chat2537"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn bodies_that_are_not_json_objects() {
    let sb = start().await;
    let url = v3_url(&sb, "tasks.task.result.add");
    for body in [
        "{not json",
        "fields[taskId]=51&fields[text]=x",
        "[1,2]",
        "\"x\"",
    ] {
        let r = post(&url, body, &[]).await;
        assert_v3_error(
            &r,
            400,
            "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION",
            None,
        );
    }
    // An empty body is an empty parameter set.
    let r = post(&url, "", &[]).await;
    assert_v3_error(
        &r,
        400,
        "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
        Some("fields"),
    );
}

#[tokio::test]
async fn query_string_is_ignored_on_v3_and_get_is_read_as_empty() {
    let sb = start().await;
    let r = read(
        client()
            .get(format!("{}?id=51", v3_url(&sb, "tasks.task.get")))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_v3_error(
        &r,
        400,
        "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION",
        Some("id"),
    );
    let put = read(
        client()
            .put(v3_url(&sb, "tasks.task.get"))
            .body(r#"{"id":51}"#)
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, POST"));
}

#[tokio::test]
async fn wrong_webhook_credentials() {
    let sb = start().await;
    let base = sb.base_url();
    for url in [
        format!("{base}/rest/api/1/wrongsecret/tasks.task.get"),
        format!("{base}/rest/api/2/{}/tasks.task.get", "x"),
        format!("{base}/rest/1/wrongsecret/im.dialog.messages.get"),
        format!("{base}/rest/1/wrongsecret/tasks.task.result.add"),
    ] {
        let r = post(&url, r#"{"id":51}"#, &[]).await;
        assert_v1_error(&r, 401, "INVALID_CREDENTIALS");
        assert_eq!(r.json["error_description"], "Invalid request credentials");
    }
    // Wrong uid with the right secret.
    let secret = sb
        .webhook_url()
        .rsplit('/')
        .nth(1)
        .unwrap_or("")
        .to_string();
    let r = post(
        &format!("{base}/rest/api/2/{secret}/tasks.task.get"),
        r#"{"id":51}"#,
        &[],
    )
    .await;
    assert_v1_error(&r, 401, "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn oauth_form_auth_errors() {
    let sb = start().await;
    let url = format!("{}/rest/api/tasks.task.get", sb.base_url());
    assert_v1_error(&post(&url, r#"{"id":51}"#, &[]).await, 401, "NO_AUTH_FOUND");
    assert_v1_error(
        &post(&url, r#"{"id":51,"auth":"nope"}"#, &[]).await,
        401,
        "invalid_token",
    );
    // REST 3.0 ignores the query string, so `?auth=` is not a credential there.
    let token = sb.access_token().expect("token");
    assert_v1_error(
        &post(&format!("{url}?auth={token}"), r#"{"id":51}"#, &[]).await,
        401,
        "NO_AUTH_FOUND",
    );
    let ok = post(&url, &json!({"id": 51, "auth": token}).to_string(), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
}

#[tokio::test]
async fn oauth_disabled_without_access_token() {
    let sb = start_with(SandboxOptions {
        access_token: None,
        ..SandboxOptions::default()
    })
    .await;
    assert_eq!(sb.access_token(), None);
    let url = format!("{}/rest/api/tasks.task.get", sb.base_url());
    assert_v1_error(
        &post(&url, r#"{"id":51,"auth":"anything"}"#, &[]).await,
        401,
        "invalid_token",
    );
}

#[tokio::test]
async fn scopes() {
    let only_task = start_with(SandboxOptions {
        webhook_scopes: vec!["task".into()],
        ..SandboxOptions::default()
    })
    .await;
    let r = v3(&only_task, "tasks.task.get", json!({"id": 51})).await;
    assert_eq!(
        r.status, 200,
        "`task` is accepted for v3 task methods: {}",
        r.text
    );
    let im = post(
        &format!("{}im.dialog.messages.get", only_task.webhook_url()),
        r#"{"DIALOG_ID":"chat2537"}"#,
        &[],
    )
    .await;
    assert_v1_error(&im, 401, "insufficient_scope");
    assert_eq!(
        im.json["error_description"],
        "The request requires higher privileges than provided by the webhook token"
    );

    let only_im = start_with(SandboxOptions {
        webhook_scopes: vec!["im".into()],
        ..SandboxOptions::default()
    })
    .await;
    let r = v3(
        &only_im,
        "tasks.task.result.add",
        json!({"fields": {"taskId": 51, "text": "x"}}),
    )
    .await;
    assert_v3_error(
        &r,
        403,
        "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION",
        None,
    );
    assert_eq!(only_im.results().len(), 2);
}

#[tokio::test]
async fn unknown_paths() {
    let sb = start().await;
    let r = read(
        client()
            .get(format!("{}/favicon.ico", sb.base_url()))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    let r = post(&sb.webhook_url(), "{}", &[]).await;
    assert_v1_error(&r, 404, "ERROR_METHOD_NOT_FOUND");
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let sb = start().await;
    v3(&sb, "tasks.task.get", json!({"id": 51})).await;
    post(
        &v3_url(&sb, "tasks.task.get"),
        r#"{"id":999}"#,
        &[("Idempotency-Key", "k1")],
    )
    .await;
    let recorded = sb.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].http_method, "POST");
    assert!(recorded[0].path.ends_with("/tasks.task.get"));
    assert!(recorded[0].path.starts_with("/rest/api/1/"));
    assert_eq!(recorded[0].body, r#"{"id":51}"#);
    assert_eq!(recorded[0].status, 200);
    assert_eq!(recorded[1].status, 400);
    assert!(
        recorded[1]
            .headers
            .iter()
            .any(|(k, v)| k == "idempotency-key" && v == "k1")
    );
}

#[tokio::test]
async fn control_endpoints() {
    let sb = start().await;
    let base = sb.base_url();
    let state = read(
        client()
            .get(format!("{base}/_sandbox/state"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(state.status, 200);
    assert_eq!(state.json["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(state.json["tasks"].as_array().map(Vec::len), Some(10));
    assert_eq!(state.json["refreshCount"], 0);

    let fault = json!({"method": "Tasks.Task.Get", "fault": {"kind": "query_limit_exceeded", "retry_after": 3}, "times": 1});
    let r = post(&format!("{base}/_sandbox/faults"), &fault.to_string(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let bad = post(
        &format!("{base}/_sandbox/faults"),
        r#"{"method":"x","fault":{"kind":"nope"}}"#,
        &[],
    )
    .await;
    assert_eq!(bad.status, 400);

    let limited = v3(&sb, "tasks.task.get", json!({"id": 51})).await;
    assert_v1_error(&limited, 503, "QUERY_LIMIT_EXCEEDED");
    assert_eq!(limited.header("retry-after"), Some("3"));
    assert_eq!(
        v3(&sb, "tasks.task.get", json!({"id": 51})).await.status,
        200
    );

    let requests = read(
        client()
            .get(format!("{base}/_sandbox/requests"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    let parsed: Vec<RecordedRequest> = serde_json::from_str(&requests.text).expect("requests json");
    assert_eq!(parsed.len(), 2, "control calls are not recorded");
    assert_eq!(parsed[0].status, 503);
    assert_eq!(parsed, sb.requests());
    // Faults injected through the API show up the same way.
    sb.inject("tasks.task.get", Fault::InternalError, 1);
    assert_v1_error(
        &v3(&sb, "tasks.task.get", json!({"id": 51})).await,
        500,
        "INTERNAL_SERVER_ERROR",
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sb = start().await;
    assert_eq!(
        v3(&sb, "tasks.task.get", json!({"id": 51})).await.status,
        200
    );
    sb.shutdown();
    let mut refused = false;
    for _ in 0..50 {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        if fresh
            .post(v3_url(&sb, "tasks.task.get"))
            .body("{}")
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "server still answering after shutdown");
}

#[tokio::test]
async fn debug_output_hides_secrets() {
    let opts = SandboxOptions {
        webhook_secret: "supersecret123".into(),
        access_token: Some("tokentoken".into()),
        oauth: Some(crate::sandbox::OAuthApp {
            client_id: "app.1".into(),
            client_secret: "clientsecret".into(),
            refresh_token: "refreshrefresh".into(),
            access_token_ttl: std::time::Duration::from_secs(60),
            ..crate::sandbox::OAuthApp::default()
        }),
        ..SandboxOptions::default()
    };
    let text = format!("{opts:?}");
    for secret in [
        "supersecret123",
        "tokentoken",
        "clientsecret",
        "refreshrefresh",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("app.1"));
}
