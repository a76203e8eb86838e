//! Idempotency, dropped connections, rate and operating limits, scripted faults.

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::sandbox::{Fault, RateLimit};

const ADD: &str = "tasks.task.result.add";
const ADD_BODY: &str = r#"{"fields":{"taskId":51,"text":"Once only"}}"#;

#[tokio::test]
async fn idempotent_replay_and_reuse() {
    let sb = start().await;
    let url = v3_url(&sb, ADD);
    let key = [("Idempotency-Key", "result-51-abc")];
    let first = post(&url, ADD_BODY, &key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("idempotency-key"), Some("result-51-abc"));
    assert_eq!(first.header("idempotent-replayed"), None);

    // Same body (keys reordered) → stored response, replay header, no second result.
    let again = post(&url, r#"{"fields":{"text":"Once only","taskId":51}}"#, &key).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("idempotency-key"), Some("result-51-abc"));
    assert_eq!(sb.results().len(), 3);

    // Same key, different body → 422.
    let reused = post(&url, r#"{"fields":{"taskId":51,"text":"Other"}}"#, &key).await;
    assert_v3_error(
        &reused,
        422,
        "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
        None,
    );
    assert_eq!(sb.results().len(), 3);

    // Keys are per method: the same key on delete is a fresh key.
    let id = first.json["result"]["item"]["id"].clone();
    let del = post(
        &v3_url(&sb, "tasks.task.result.delete"),
        &json!({"id": id}).to_string(),
        &key,
    )
    .await;
    assert_eq!(del.status, 200, "{}", del.text);
    assert_eq!(del.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn idempotency_errors_are_not_stored() {
    let sb = start().await;
    let url = v3_url(&sb, ADD);
    let key = [("Idempotency-Key", "k-err")];
    let denied = post(&url, r#"{"fields":{"taskId":53,"text":"x"}}"#, &key).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("idempotency-key"), Some("k-err"));
    let ok = post(&url, ADD_BODY, &key).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn invalid_idempotency_keys() {
    let sb = start().await;
    let url = v3_url(&sb, ADD);
    let long = "k".repeat(256);
    let r = post(&url, ADD_BODY, &[("Idempotency-Key", &long)]).await;
    assert_v3_error(
        &r,
        400,
        "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
        None,
    );
    let non_ascii = client()
        .post(&url)
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes("ключ".as_bytes()).expect("header"),
        )
        .body(ADD_BODY)
        .send()
        .await
        .expect("sent");
    let r = read(non_ascii).await;
    assert_v3_error(
        &r,
        400,
        "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION",
        None,
    );
    let max = "k".repeat(255);
    assert_eq!(
        post(&url, ADD_BODY, &[("Idempotency-Key", &max)])
            .await
            .status,
        200
    );
    assert_eq!(sb.results().len(), 3);
}

#[tokio::test]
async fn oauth_replay_ignores_auth_value() {
    let sb = start_with(SandboxOptions {
        access_token: Some("old-token".into()),
        oauth: Some(crate::sandbox::OAuthApp {
            client_id: "app".into(),
            client_secret: "secret".into(),
            refresh_token: "r0".into(),
            access_token_ttl: Duration::from_secs(600),
            ..crate::sandbox::OAuthApp::default()
        }),
        ..SandboxOptions::default()
    })
    .await;
    let url = format!("{}/rest/api/{ADD}", sb.base_url());
    let key = [("Idempotency-Key", "oauth-k")];
    let body = json!({"fields": {"taskId": 51, "text": "x"}, "auth": "old-token"});
    let first = post(&url, &body.to_string(), &key).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let refreshed = client()
        .post(format!("{}/oauth/token/", sb.base_url()))
        .body("grant_type=refresh_token&client_id=app&client_secret=secret&refresh_token=r0")
        .send()
        .await
        .expect("sent");
    assert_eq!(refreshed.status(), 200);
    let new_token = sb.access_token().expect("new token");
    assert_ne!(new_token, "old-token");
    // The retry after a refresh carries a new `auth`: still the same request.
    let body2 = json!({"auth": new_token, "fields": {"text": "x", "taskId": 51}});
    let r = post(&url, &body2.to_string(), &key).await;
    assert_eq!(r.header("idempotent-replayed"), Some("true"), "{}", r.text);
    assert_eq!(r.text, first.text);
    assert_eq!(sb.results().len(), 3);
    // The webhook is another credential: the same key there is a fresh key.
    let hook = post(
        &v3_url(&sb, ADD),
        r#"{"fields":{"taskId":51,"text":"x"}}"#,
        &key,
    )
    .await;
    assert_eq!(hook.header("idempotent-replayed"), None);
    assert_eq!(sb.results().len(), 4);
}

#[tokio::test]
async fn drop_after_apply_then_retry_replays() {
    let sb = start().await;
    sb.inject(ADD, Fault::DropAfterApply, 1);
    let url = v3_url(&sb, ADD);
    let err = client()
        .post(&url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", "drop-1")
        .body(ADD_BODY)
        .send()
        .await
        .expect_err("connection must be dropped without a response");
    eprintln!(
        "DROP ERROR: {err:?} source={:?}",
        std::error::Error::source(&err)
    );
    assert!(!err.is_timeout(), "{err:?}");
    assert!(err.status().is_none(), "{err:?}");
    // The method ran.
    assert_eq!(sb.results().len(), 3);
    assert_eq!(sb.requests().last().map(|r| r.status), Some(0));

    let retry = post(&url, ADD_BODY, &[("Idempotency-Key", "drop-1")]).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json["result"]["item"]["id"], 100);
    assert_eq!(
        sb.results().len(),
        3,
        "the retry must not create a second result"
    );

    // Without a key the retry duplicates: exactly the ambiguity the key exists for.
    sb.inject(ADD, Fault::DropAfterApply, 1);
    assert!(client().post(&url).body(ADD_BODY).send().await.is_err());
    assert_eq!(post(&url, ADD_BODY, &[]).await.status, 200);
    assert_eq!(sb.results().len(), 5);
}

#[tokio::test]
async fn drop_on_a_pooled_keep_alive_connection_is_not_retried_by_the_client() {
    let sb = start().await;
    let shared = client();
    let url = v3_url(&sb, ADD);
    let warm = shared
        .post(&url)
        .body(ADD_BODY)
        .send()
        .await
        .expect("warm-up");
    assert_eq!(warm.status(), 200);
    let _ = warm.text().await;
    sb.inject(ADD, Fault::DropAfterApply, 1);
    assert!(shared.post(&url).body(ADD_BODY).send().await.is_err());
    assert_eq!(sb.results().len(), 4, "applied exactly once");
    // The pool recovers with a fresh connection.
    let after = shared
        .post(&url)
        .body(ADD_BODY)
        .send()
        .await
        .expect("after");
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn leaky_bucket_refuses_after_burst() {
    let sb = start_with(SandboxOptions {
        rate: Some(RateLimit {
            drain_per_sec: 2.0,
            burst: 3,
        }),
        ..SandboxOptions::default()
    })
    .await;
    let url = v3_url(&sb, ADD);
    for _ in 0..3 {
        assert_eq!(post(&url, ADD_BODY, &[]).await.status, 200);
    }
    let refused = post(&url, ADD_BODY, &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.json,
        json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    );
    assert_eq!(sb.results().len(), 5, "refused request did not run");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(post(&url, ADD_BODY, &[]).await.status, 200);
}

#[tokio::test]
async fn operating_limit_blocks_the_method_only() {
    let sb = start_with(SandboxOptions {
        operating_limit: Some(Duration::from_millis(100)),
        ..SandboxOptions::default()
    })
    .await;
    sb.inject("tasks.task.get", Fault::Slow(Duration::from_millis(150)), 1);
    let slow = v3(&sb, "tasks.task.get", json!({"id": 51})).await;
    assert_eq!(slow.status, 200);
    let operating = slow.json["time"]["operating"].as_f64().expect("operating");
    assert!(operating >= 0.15, "{operating}");
    let blocked = v3(&sb, "tasks.task.get", json!({"id": 51})).await;
    assert_v1_error(&blocked, 429, "OPERATION_TIME_LIMIT");
    let reset_at = blocked.json["operating_reset_at"].as_i64().expect("reset");
    assert!(reset_at > crate::sandbox::time::now_secs());
    assert_eq!(
        reset_at,
        slow.json["time"]["operating_reset_at"]
            .as_i64()
            .expect("reset")
    );
    // Another method is not affected.
    let other = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51]]}),
    )
    .await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn each_fault_kind() {
    let sb = start().await;
    let url = v3_url(&sb, ADD);
    sb.inject(ADD, Fault::QueryLimitExceeded { retry_after: None }, 1);
    sb.inject(
        ADD,
        Fault::OperationTimeLimit {
            reset_in: Duration::from_secs(30),
        },
        1,
    );
    sb.inject(ADD, Fault::ExpiredToken, 1);
    sb.inject(ADD, Fault::InvalidToken, 1);
    sb.inject(ADD, Fault::InternalError, 1);
    sb.inject(ADD, Fault::InternalErrorV3, 1);
    sb.inject(ADD, Fault::Html, 2);
    sb.inject(
        ADD,
        Fault::Raw {
            status: 200,
            content_type: "application/json".into(),
            body: b"{\"result\":".to_vec(),
        },
        1,
    );

    let r = post(&url, ADD_BODY, &[]).await;
    assert_v1_error(&r, 503, "QUERY_LIMIT_EXCEEDED");
    assert_eq!(r.header("retry-after"), None);

    let r = post(&url, ADD_BODY, &[]).await;
    assert_v1_error(&r, 429, "OPERATION_TIME_LIMIT");
    assert_eq!(
        r.json["error_description"],
        "Method is blocked due to operation time limit"
    );
    let reset = r.json["operating_reset_at"].as_i64().expect("reset");
    let now = crate::sandbox::time::now_secs();
    assert!((now + 28..=now + 31).contains(&reset), "{reset} vs {now}");

    let r = post(&url, ADD_BODY, &[]).await;
    assert_v1_error(&r, 401, "expired_token");
    assert_eq!(
        r.json["error_description"],
        "The access token provided has expired"
    );
    assert_v1_error(&post(&url, ADD_BODY, &[]).await, 401, "invalid_token");
    assert_v1_error(
        &post(&url, ADD_BODY, &[]).await,
        500,
        "INTERNAL_SERVER_ERROR",
    );

    let r = post(&url, ADD_BODY, &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json,
        json!({"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error"}})
    );
    for _ in 0..2 {
        let r = post(&url, ADD_BODY, &[]).await;
        assert_eq!(r.status, 502);
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/html")
        );
        assert!(r.text.contains("502 Bad Gateway"));
    }
    let r = post(&url, ADD_BODY, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text, "{\"result\":");
    assert_eq!(sb.results().len(), 2, "no fault ran the method");

    // Queue exhausted: normal again.
    assert_eq!(post(&url, ADD_BODY, &[]).await.status, 200);
}

#[tokio::test]
async fn slow_fault_delays_then_runs() {
    let sb = start().await;
    sb.inject(
        "TASKS.TASK.RESULT.ADD",
        Fault::Slow(Duration::from_millis(300)),
        1,
    );
    let began = Instant::now();
    let r = post(&v3_url(&sb, ADD), ADD_BODY, &[]).await;
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);
    assert!(r.json["time"]["processing"].as_f64().unwrap_or(0.0) >= 0.3);
    assert_eq!(sb.results().len(), 3);
}

#[tokio::test]
async fn faults_apply_to_v1_methods_too() {
    let sb = start().await;
    sb.inject("im.dialog.messages.get", Fault::ExpiredToken, 1);
    let url = format!("{}im.dialog.messages.get", sb.webhook_url());
    assert_v1_error(
        &post(&url, r#"{"DIALOG_ID":"chat2537"}"#, &[]).await,
        401,
        "expired_token",
    );
    assert_eq!(
        post(&url, r#"{"DIALOG_ID":"chat2537"}"#, &[]).await.status,
        200
    );
}
