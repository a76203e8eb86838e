//! OAuth: token expiry on portal calls and the `/oauth/token/` refresh endpoint.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::sandbox::{Fault, OAuthApp};

fn app(ttl: Duration) -> SandboxOptions {
    SandboxOptions {
        access_token: Some("initial-access".into()),
        oauth: Some(OAuthApp {
            client_id: "local.app.1".into(),
            client_secret: "client-secret".into(),
            refresh_token: "refresh-0".into(),
            access_token_ttl: ttl,
        }),
        ..SandboxOptions::default()
    }
}

async fn refresh_post(sb: &Sandbox, refresh: &str, secret: &str) -> Resp {
    let body = format!(
        "grant_type=refresh_token&client_id=local.app.1&client_secret={secret}&refresh_token={refresh}"
    );
    let r = client()
        .post(format!("{}/oauth/token/", sb.base_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("sent");
    read(r).await
}

async fn call_get(sb: &Sandbox, token: &str) -> Resp {
    post(
        &format!("{}/rest/api/tasks.task.get", sb.base_url()),
        &json!({"id": 51, "auth": token}).to_string(),
        &[],
    )
    .await
}

#[tokio::test]
async fn refresh_rotates_both_tokens() {
    let sb = start_with(app(Duration::from_secs(3600))).await;
    assert_eq!(call_get(&sb, "initial-access").await.status, 200);
    let r = refresh_post(&sb, "refresh-0", "client-secret").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let base = sb.base_url();
    for key in [
        "access_token",
        "refresh_token",
        "member_id",
        "domain",
        "scope",
        "status",
    ] {
        assert!(r.json[key].is_string(), "{key} in {}", r.text);
    }
    assert_eq!(r.json["expires_in"], 3600);
    assert!(r.json["expires"].as_i64().expect("expires") > crate::sandbox::time::now_secs());
    assert_eq!(r.json["server_endpoint"], format!("{base}/rest/"));
    assert_eq!(r.json["client_endpoint"], format!("{base}/rest/"));
    assert_eq!(r.json["user_id"], 1);
    assert_eq!(r.json["scope"], "tasks,task,im");
    let access = r.json["access_token"].as_str().expect("access").to_string();
    let refresh = r.json["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_ne!(refresh, "refresh-0");
    assert_eq!(sb.access_token().as_deref(), Some(access.as_str()));
    assert_eq!(sb.refresh_token().as_deref(), Some(refresh.as_str()));
    assert_eq!(sb.refresh_count(), 1);
    assert_eq!(call_get(&sb, &access).await.status, 200);

    // The used refresh token is dead.
    let stale = refresh_post(&sb, "refresh-0", "client-secret").await;
    assert_v1_error(&stale, 400, "invalid_grant");
    assert_eq!(stale.json["error_description"], "Invalid grant");

    // GET with the query string works too (the documented form).
    let get = client()
        .get(format!(
            "{base}/oauth/token/?grant_type=refresh_token&client_id=local.app.1&client_secret=client-secret&refresh_token={refresh}"
        ))
        .send()
        .await
        .expect("sent");
    let get = read(get).await;
    assert_eq!(get.status, 200, "{}", get.text);
    assert_eq!(sb.refresh_count(), 2);
}

#[tokio::test]
async fn refresh_errors() {
    let sb = start_with(app(Duration::from_secs(3600))).await;
    assert_v1_error(
        &refresh_post(&sb, "refresh-0", "wrong").await,
        401,
        "invalid_client",
    );
    assert_v1_error(
        &refresh_post(&sb, "bogus", "client-secret").await,
        400,
        "invalid_grant",
    );
    assert_v1_error(
        &refresh_post(&sb, "", "client-secret").await,
        400,
        "invalid_grant",
    );
    let wrong_grant = client()
        .post(format!("{}/oauth/token/", sb.base_url()))
        .body("grant_type=authorization_code&client_id=local.app.1&client_secret=client-secret&code=x")
        .send()
        .await
        .expect("sent");
    assert_v1_error(&read(wrong_grant).await, 400, "invalid_request");
    assert_eq!(sb.refresh_count(), 0);
    // Failed attempts did not burn the refresh token.
    assert_eq!(
        refresh_post(&sb, "refresh-0", "client-secret").await.status,
        200
    );
}

#[tokio::test]
async fn expired_token_then_refresh_and_retry() {
    let sb = start_with(app(Duration::from_millis(300))).await;
    assert_eq!(call_get(&sb, "initial-access").await.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = call_get(&sb, "initial-access").await;
    assert_v1_error(&expired, 401, "expired_token");
    assert_eq!(
        expired.json["error_description"],
        "The access token provided has expired"
    );
    let r = refresh_post(&sb, "refresh-0", "client-secret").await;
    let access = r.json["access_token"].as_str().expect("access").to_string();
    assert_eq!(call_get(&sb, &access).await.status, 200);
}

#[tokio::test]
async fn token_endpoint_absent_without_oauth_app_and_scriptable() {
    let plain = start().await;
    let r = refresh_post(&plain, "x", "y").await;
    assert_eq!(r.status, 404);

    let sb = start_with(app(Duration::from_secs(60))).await;
    sb.inject("oauth.token", Fault::InternalError, 1);
    assert_v1_error(
        &refresh_post(&sb, "refresh-0", "client-secret").await,
        500,
        "INTERNAL_SERVER_ERROR",
    );
    assert_eq!(
        refresh_post(&sb, "refresh-0", "client-secret").await.status,
        200
    );
}
