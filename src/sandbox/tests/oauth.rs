//! OAuth: token expiry on portal calls, the `/oauth/token/` refresh endpoint, and signing
//! people in (`/oauth/authorize/`, the code grant, per-person tokens and rights, the OAuth
//! controls). Over 400 lines because each flow needs its own few HTTP round trips.

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
            ..OAuthApp::default()
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
        .body("grant_type=password&client_id=local.app.1&client_secret=client-secret&username=x")
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

/// The app of [`app`] with a registered redirect address on a port nobody listens on (the
/// client never follows redirects).
const REDIRECT: &str = "http://127.0.0.1:9/b24/callback";

fn sign_in_app() -> SandboxOptions {
    let mut opts = app(Duration::from_secs(3600));
    if let Some(a) = opts.oauth.as_mut() {
        a.redirect_uri = Some(REDIRECT.into());
    }
    opts
}

async fn get(url: &str) -> Resp {
    read(client().get(url).send().await.expect("sent")).await
}

fn authorize_url(sb: &Sandbox, extra: &str) -> String {
    format!(
        "{}/oauth/authorize/?client_id=local.app.1&state=st%20%26x{extra}",
        sb.base_url()
    )
}

/// Follows the sign-in as `user` and returns the redirect's query parameters.
async fn sign_in(sb: &Sandbox, user: u64) -> std::collections::HashMap<String, String> {
    let r = get(&authorize_url(sb, &format!("&user_id={user}"))).await;
    assert_eq!(r.status, 302, "{}", r.text);
    let location = url::Url::parse(r.header("location").expect("Location")).expect("url");
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    location.query_pairs().into_owned().collect()
}

async fn exchange(sb: &Sandbox, code: &str, secret: &str) -> Resp {
    get(&format!(
        "{}/oauth/token/?grant_type=authorization_code&client_id=local.app.1&client_secret={secret}&code={code}",
        sb.base_url()
    ))
    .await
}

/// Signs `user` in and returns their (access, refresh) pair.
async fn tokens_of(sb: &Sandbox, user: u64) -> (String, String) {
    let code = sign_in(sb, user).await["code"].clone();
    let r = exchange(sb, &code, "client-secret").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["user_id"], user);
    let field = |k: &str| r.json[k].as_str().expect(k).to_string();
    (field("access_token"), field("refresh_token"))
}

async fn v3_oauth(sb: &Sandbox, method: &str, token: &str, mut body: Value) -> Resp {
    body["auth"] = json!(token);
    post(
        &format!("{}/rest/api/{method}", sb.base_url()),
        &body.to_string(),
        &[],
    )
    .await
}

async fn control(sb: &Sandbox, path: &str, body: &str) -> Resp {
    let r = client()
        .post(format!("{}/_sandbox/oauth/{path}", sb.base_url()))
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    read(r).await
}

#[tokio::test]
async fn sign_in_page_lists_the_users() {
    let sb = start_with(sign_in_app()).await;
    let r = get(&authorize_url(&sb, "")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/html")
    );
    assert!(r.text.contains("Bitrix24 sandbox"), "{}", r.text);
    for (id, name) in [(1, "Sandbox User"), (2, "Other User")] {
        assert!(r.text.contains(name), "{name} in {}", r.text);
        let href = format!(
            "href=\"/oauth/authorize/?client_id=local.app.1&amp;state=st%20%26x&amp;user_id={id}\""
        );
        assert!(r.text.contains(&href), "{href} in {}", r.text);
    }
    for external in ["<script", "<link", "<img", "src=", "http://", "https://"] {
        assert!(!r.text.contains(external), "{external} in {}", r.text);
    }

    for bad in [
        "/oauth/authorize/?client_id=someone.else&state=x",
        "/oauth/authorize/?state=x",
        "/oauth/authorize/?client_id=local.app.1&state=x&user_id=99",
        "/oauth/authorize/?client_id=local.app.1&state=x&user_id=abc",
    ] {
        let r = get(&format!("{}{bad}", sb.base_url())).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(r.text.contains("Bitrix24 sandbox"), "{}", r.text);
        assert!(r.header("location").is_none());
    }
    // Without an OAuth app every client is unknown.
    let plain = start().await;
    assert_eq!(get(&authorize_url(&plain, "")).await.status, 400);
}

#[tokio::test]
async fn code_exchange_signs_each_person_in() {
    let sb = start_with(sign_in_app()).await;
    let base = sb.base_url();
    for user in [1u64, 2] {
        let q = sign_in(&sb, user).await;
        assert_eq!(q["state"], "st &x");
        assert_eq!(q["domain"], sb.addr().to_string());
        assert_eq!(q["server_domain"], sb.addr().to_string());
        assert_eq!(q["member_id"], crate::sandbox::oauth::MEMBER_ID);
        assert_eq!(q["scope"], "tasks,task,im");
        assert!(q["code"].len() >= 16, "{q:?}");
        let r = exchange(&sb, &q["code"], "client-secret").await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["user_id"], user);
        assert_eq!(r.json["member_id"], crate::sandbox::oauth::MEMBER_ID);
        assert_eq!(r.json["domain"], sb.addr().to_string());
        assert_eq!(r.json["server_endpoint"], format!("{base}/rest/"));
        assert_eq!(r.json["client_endpoint"], format!("{base}/rest/"));
        assert_eq!(r.json["expires_in"], 3600);
        assert_eq!(r.json["status"], "F");
        assert!(r.json["refresh_token"].is_string(), "{}", r.text);
    }
    // The configured identity is untouched by sign-ins.
    assert_eq!(sb.access_token().as_deref(), Some("initial-access"));
    assert_eq!(sb.refresh_token().as_deref(), Some("refresh-0"));

    // Task 53 is user 2's alone: each token sees what its person sees.
    let (one, _) = tokens_of(&sb, 1).await;
    let (two, _) = tokens_of(&sb, 2).await;
    let secret_task = json!({"id": 53});
    let mine = v3_oauth(&sb, "tasks.task.get", &two, secret_task.clone()).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let theirs = v3_oauth(&sb, "tasks.task.get", &one, secret_task).await;
    assert_v3_error(
        &theirs,
        403,
        crate::sandbox::reply::ACCESS_DENIED,
        Some("id"),
    );
}

#[tokio::test]
async fn codes_are_single_use_and_short_lived() {
    let sb = start_with(sign_in_app()).await;
    let code = sign_in(&sb, 2).await["code"].clone();
    assert_v1_error(&exchange(&sb, &code, "wrong").await, 401, "invalid_client");
    // A refused client did not burn the code.
    assert_eq!(exchange(&sb, &code, "client-secret").await.status, 200);
    assert_v1_error(
        &exchange(&sb, &code, "client-secret").await,
        400,
        "invalid_grant",
    );
    assert_v1_error(
        &exchange(&sb, "no-such-code", "client-secret").await,
        400,
        "invalid_grant",
    );
    assert_v1_error(
        &exchange(&sb, "", "client-secret").await,
        400,
        "invalid_grant",
    );
    // A form POST works as for refreshes.
    let code = sign_in(&sb, 1).await["code"].clone();
    let r = client()
        .post(format!("{}/oauth/token/", sb.base_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&client_id=local.app.1&client_secret=client-secret&code={code}"
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(read(r).await.json["user_id"], 1);

    assert_eq!(OAuthApp::default().code_ttl, Duration::from_secs(30));
    let mut opts = sign_in_app();
    if let Some(a) = opts.oauth.as_mut() {
        a.code_ttl = Duration::from_millis(200);
    }
    let short = start_with(opts).await;
    let code = sign_in(&short, 2).await["code"].clone();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_v1_error(
        &exchange(&short, &code, "client-secret").await,
        400,
        "invalid_grant",
    );
}

#[tokio::test]
async fn redirect_address_rules() {
    let sb = start_with(sign_in_app()).await;
    let elsewhere = "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fother%3Fkeep%3D1";
    let r = get(&authorize_url(&sb, &format!("{elsewhere}&user_id=1"))).await;
    assert_eq!(r.status, 302, "{}", r.text);
    let location = r.header("location").expect("Location");
    assert!(
        location.starts_with("http://127.0.0.1:9/other?keep=1&code="),
        "{location}"
    );
    for foreign in [
        "http%3A%2F%2F127.0.0.1%3A10%2Fb24%2Fcallback",
        "https%3A%2F%2F127.0.0.1%3A9%2Fb24%2Fcallback",
        "http%3A%2F%2Fevil.example%3A9%2F",
        "not-a-url",
    ] {
        let r = get(&authorize_url(&sb, &format!("&redirect_uri={foreign}"))).await;
        assert_eq!(r.status, 400, "{foreign}: {}", r.text);
    }

    // No registered address: the code is shown on a page, and it works.
    let bare = start_with(app(Duration::from_secs(3600))).await;
    let r = get(&authorize_url(&bare, "&user_id=2")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("location").is_none());
    let code = r
        .text
        .split("<dt>code</dt><dd><code>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("code on the page")
        .to_string();
    assert_eq!(
        exchange(&bare, &code, "client-secret").await.json["user_id"],
        2
    );
    let r = get(&authorize_url(&bare, &format!("{elsewhere}&user_id=2"))).await;
    assert_eq!(r.status, 400, "no registered domain to match: {}", r.text);

    // Re-registering the address, through the handle or the control endpoint.
    bare.set_redirect_uri(Some("http://127.0.0.1:9/late"));
    let r = get(&authorize_url(&bare, "&user_id=2")).await;
    let location = r.header("location").expect("Location");
    assert!(
        location.starts_with("http://127.0.0.1:9/late?"),
        "{location}"
    );
    let set = control(&bare, "redirect", r#"{"redirectUri":null}"#).await;
    assert_eq!(set.json["ok"], true, "{}", set.text);
    assert_eq!(get(&authorize_url(&bare, "&user_id=2")).await.status, 200);
    assert_eq!(control(&bare, "redirect", "").await.status, 400);
    let set = control(
        &bare,
        "redirect",
        r#"{"redirectUri":"http://127.0.0.1:9/x"}"#,
    )
    .await;
    assert_eq!(set.status, 200);
    assert_eq!(get(&authorize_url(&bare, "&user_id=2")).await.status, 302);
}

#[tokio::test]
async fn each_person_writes_as_themselves() {
    let sb = start_with(sign_in_app()).await;
    let (one, _) = tokens_of(&sb, 1).await;
    let (two, _) = tokens_of(&sb, 2).await;
    let add = |token: String, text: &'static str| {
        let sb = sb.clone();
        async move {
            let r = v3_oauth(
                &sb,
                "tasks.task.result.add",
                &token,
                json!({"fields": {"taskId": 51, "text": text}}),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.json["result"]["item"].clone()
        }
    };
    let by_one = add(one.clone(), "from one").await;
    let by_two = add(two.clone(), "from two").await;
    let by_configured = add("initial-access".into(), "configured").await;
    assert_eq!(by_one["authorId"], 1);
    assert_eq!(by_two["authorId"], 2);
    assert_eq!(by_configured["authorId"], 1);
    assert_eq!(by_two["rights"], json!({"edit": true, "remove": true}));

    let id_one = by_one["id"].clone();
    let update = json!({"id": id_one, "fields": {"text": "hijacked"}});
    let denied = v3_oauth(&sb, "tasks.task.result.update", &two, update.clone()).await;
    assert_v3_error(
        &denied,
        403,
        crate::sandbox::reply::ACCESS_DENIED,
        Some("id"),
    );
    let denied = v3_oauth(&sb, "tasks.task.result.delete", &two, json!({"id": id_one})).await;
    assert_v3_error(
        &denied,
        403,
        crate::sandbox::reply::ACCESS_DENIED,
        Some("id"),
    );
    let own = v3_oauth(&sb, "tasks.task.result.update", &one, update).await;
    assert_eq!(own.status, 200, "{}", own.text);

    // The list as user 2 sees it: rights are theirs.
    let listed = v3_oauth(
        &sb,
        "tasks.task.result.list",
        &two,
        json!({"filter": [["taskId", 51]]}),
    )
    .await;
    let items = listed.json["result"]["items"]
        .as_array()
        .expect("items")
        .clone();
    assert!(items.iter().any(|i| i["authorId"] == 1), "{}", listed.text);
    assert!(items.iter().any(|i| i["authorId"] == 2), "{}", listed.text);
    for item in &items {
        let own = item["authorId"] == 2;
        assert_eq!(item["rights"]["edit"], own, "{item}");
    }
    // Control snapshots stay as the configured user sees them.
    let seen = sb.results();
    let theirs = seen.iter().find(|r| r["authorId"] == 2).expect("user 2's");
    assert_eq!(theirs["rights"]["edit"], false);
}

#[tokio::test]
async fn refresh_tokens_rotate_per_person() {
    let sb = start_with(sign_in_app()).await;
    let (_, one) = tokens_of(&sb, 1).await;
    let (_, two) = tokens_of(&sb, 2).await;
    let r = refresh_post(&sb, &two, "client-secret").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["user_id"], 2);
    let access = r.json["access_token"].as_str().expect("access").to_string();
    let added = v3_oauth(
        &sb,
        "tasks.task.result.add",
        &access,
        json!({"fields": {"taskId": 52, "text": "after refresh"}}),
    )
    .await;
    assert_eq!(
        added.json["result"]["item"]["authorId"], 2,
        "{}",
        added.text
    );
    assert_v1_error(
        &refresh_post(&sb, &two, "client-secret").await,
        400,
        "invalid_grant",
    );
    assert_eq!(
        refresh_post(&sb, &one, "client-secret").await.json["user_id"],
        1
    );
    // The configured grant is its own chain.
    assert_eq!(sb.refresh_token().as_deref(), Some("refresh-0"));
    assert_eq!(
        refresh_post(&sb, "refresh-0", "client-secret").await.status,
        200
    );

    assert_eq!(sb.refresh_count(), 3);
    assert_eq!(
        sb.refresh_counts(),
        std::collections::BTreeMap::from([(1, 2), (2, 1)])
    );
    let state = get(&format!("{}/_sandbox/state", sb.base_url())).await;
    assert_eq!(state.json["refreshCount"], 3);
    assert_eq!(state.json["refreshCounts"], json!({"1": 2, "2": 1}));
    assert!(state.json["results"].is_array(), "{}", state.text);
}

#[tokio::test]
async fn expire_and_revoke_controls() {
    let sb = start_with(sign_in_app()).await;
    let (two, two_refresh) = tokens_of(&sb, 2).await;
    let task = json!({"id": 51});
    assert_eq!(
        control(&sb, "expire", r#"{"userId":2}"#).await.json["ok"],
        true
    );
    assert_v1_error(
        &v3_oauth(&sb, "tasks.task.get", &two, task.clone()).await,
        401,
        "expired_token",
    );
    assert_eq!(call_get(&sb, "initial-access").await.status, 200);
    let r = refresh_post(&sb, &two_refresh, "client-secret").await;
    let two = r.json["access_token"].as_str().expect("access").to_string();
    let two_refresh = r.json["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_eq!(
        v3_oauth(&sb, "tasks.task.get", &two, task.clone())
            .await
            .status,
        200
    );

    // No body: everyone.
    assert_eq!(control(&sb, "expire", "").await.status, 200);
    assert_v1_error(&call_get(&sb, "initial-access").await, 401, "expired_token");
    assert_v1_error(
        &v3_oauth(&sb, "tasks.task.get", &two, task.clone()).await,
        401,
        "expired_token",
    );

    assert_eq!(control(&sb, "revoke", "").await.status, 400);
    assert_eq!(control(&sb, "revoke", r#"{"user":2}"#).await.status, 400);
    assert_eq!(
        control(&sb, "revoke", r#"{"userId":2}"#).await.json["ok"],
        true
    );
    assert_v1_error(
        &v3_oauth(&sb, "tasks.task.get", &two, task.clone()).await,
        401,
        "invalid_token",
    );
    assert_v1_error(
        &refresh_post(&sb, &two_refresh, "client-secret").await,
        400,
        "invalid_grant",
    );
    // User 1's configured grant survives user 2's revocation.
    assert_eq!(
        refresh_post(&sb, "refresh-0", "client-secret").await.status,
        200
    );

    // The same through the handle.
    let (two, two_refresh) = tokens_of(&sb, 2).await;
    sb.expire_access_tokens_of(2);
    assert_v1_error(
        &v3_oauth(&sb, "tasks.task.get", &two, task.clone()).await,
        401,
        "expired_token",
    );
    sb.revoke_tokens_of(2);
    assert_v1_error(
        &refresh_post(&sb, &two_refresh, "client-secret").await,
        400,
        "invalid_grant",
    );
    let pending = sign_in(&sb, 2).await["code"].clone();
    sb.revoke_tokens_of(2);
    assert_v1_error(
        &exchange(&sb, &pending, "client-secret").await,
        400,
        "invalid_grant",
    );
    assert_eq!(
        sb.authorize_url("a b").as_deref(),
        Some(
            format!(
                "{}/oauth/authorize/?client_id=local.app.1&state=a+b",
                sb.base_url()
            )
            .as_str()
        )
    );
}
