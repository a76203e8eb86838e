//! The whole flow at trace level, success and failure paths, with recognisable secrets:
//! none may appear on stdout (every JSON-RPC message, tool results and errors included)
//! or on stderr. Covers the inbound webhook and the OAuth access token.

use crate::support::{common, raw};

use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use raw::{RawSession, assert_no_panic, assert_stdout_is_jsonrpc};
use serde_json::{Value, json};

const WEBHOOK_SECRET: &str = "zq7webhooksecret0flow9x";
const ACCESS_TOKEN: &str = "zq7oauthaccesstoken0flow9x";

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxOptions {
        webhook_secret: WEBHOOK_SECRET.into(),
        access_token: Some(ACCESS_TOKEN.into()),
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

/// Every tool, the error paths a portal can take, and bad input.
async fn whole_flow(s: &mut RawSession, sandbox: &Sandbox, credential: &str) -> Vec<Value> {
    let mut answers = vec![s.initialize().await];
    answers.push(
        s.request(json!("list-tools"), "tools/list", json!({}))
            .await,
    );
    let added = s
        .call(
            json!(1),
            "task_result_add",
            json!({"taskId": 51, "text": "secret flow"}),
        )
        .await;
    let id = added["result"]["structuredContent"]["id"].clone();
    assert!(id.is_u64(), "{added}");
    answers.push(added);
    for (n, (tool, args)) in [
        ("task_result_list", json!({"taskId": 51})),
        ("task_result_update", json!({"id": id, "text": "changed"})),
        ("task_result_add_from_chat", json!({"messageId": 900})),
        ("task_result_delete", json!({"id": id})),
        ("task_result_delete", json!({"id": 424242})),
        ("task_result_add", json!({"taskId": "bad"})),
        ("task_result_list", json!({"taskId": 999999})),
        ("no_such_tool", json!({})),
    ]
    .into_iter()
    .enumerate()
    {
        answers.push(s.call(json!(10 + n), tool, args).await);
    }
    for (n, fault) in [
        Fault::Html,
        Fault::ExpiredToken,
        Fault::InvalidToken,
        Fault::InternalErrorV3,
        Fault::QueryLimitExceeded { retry_after: None },
        Fault::DropAfterApply,
        Fault::Raw {
            status: 400,
            content_type: "application/json".into(),
            // A portal that echoes the credential back.
            body: format!(r#"{{"error":{{"code":"X","message":"bad auth {credential} here"}}}}"#)
                .into_bytes(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let times = common::attempts_to_exhaust(&fault, true);
        sandbox.inject("tasks.task.result.add", fault, times);
        answers.push(
            s.call(
                json!(100 + n),
                "task_result_add",
                json!({"taskId": 51, "text": "x"}),
            )
            .await,
        );
    }
    answers
}

fn assert_clean(what: &str, haystack: &str) {
    for secret in [WEBHOOK_SECRET, ACCESS_TOKEN] {
        assert!(
            !haystack.contains(secret),
            "a secret leaked into {what}: {haystack:.2000}"
        );
    }
}

async fn check(s: RawSession, answers: Vec<Value>) {
    // The echoing portal's message was shown, masked.
    let echoed = answers.iter().find(|a| a["id"] == json!(106)).unwrap();
    assert!(echoed.to_string().contains("bad auth *** here"), "{echoed}");
    for a in &answers {
        assert_clean("a tool result or error", &a.to_string());
    }
    let (status, lines, stderr) = s.finish().await;
    assert!(status.success(), "{status:?}\n{stderr}");
    assert_stdout_is_jsonrpc(&lines);
    assert_no_panic(&stderr, &lines);
    assert_clean("stdout", &lines.join("\n"));
    assert!(stderr.contains("TRACE"), "trace logging was on");
    assert_clean("stderr", &stderr);
}

#[tokio::test]
async fn webhook_secret_never_leaks_at_trace_level() {
    let sandbox = sandbox().await;
    let url = sandbox.webhook_url();
    assert!(url.contains(WEBHOOK_SECRET));
    let mut s = RawSession::start(
        &[],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("RUST_LOG", "trace"),
        ],
    );
    let answers = whole_flow(&mut s, &sandbox, WEBHOOK_SECRET).await;
    check(s, answers).await;
}

#[tokio::test]
async fn oauth_access_token_never_leaks_at_trace_level() {
    let sandbox = sandbox().await;
    let portal = sandbox.base_url();
    let mut s = RawSession::start(
        &[],
        &[
            ("BITRIX24_PORTAL_URL", portal.as_str()),
            ("BITRIX24_ACCESS_TOKEN", ACCESS_TOKEN),
            ("RUST_LOG", "trace"),
        ],
    );
    let answers = whole_flow(&mut s, &sandbox, ACCESS_TOKEN).await;
    // The calls really went to /rest/api/ with the token in the body.
    let add = sandbox
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/rest/api/tasks.task.result.add"))
        .expect("an OAuth call of tasks.task.result.add");
    assert!(add.body.contains(ACCESS_TOKEN));
    check(s, answers).await;
}

#[tokio::test]
async fn unreachable_oauth_portal_error_has_no_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let portal = format!("http://127.0.0.1:{port}");
    let mut s = RawSession::start(
        &[],
        &[
            ("BITRIX24_PORTAL_URL", portal.as_str()),
            ("BITRIX24_ACCESS_TOKEN", ACCESS_TOKEN),
            ("RUST_LOG", "trace"),
        ],
    );
    s.initialize().await;
    let r = s
        .call(
            json!(1),
            "task_result_add",
            json!({"taskId": 51, "text": "x"}),
        )
        .await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r.to_string().contains("Could not connect"), "{r}");
    assert_clean("the error", &r.to_string());
    let (_, lines, stderr) = s.finish().await;
    assert_clean("stdout", &lines.join("\n"));
    assert_clean("stderr", &stderr);
}

#[tokio::test]
async fn doctor_and_print_config_keep_every_credential_out_at_trace_level() {
    let sandbox = sandbox().await;
    let portal = sandbox.base_url();
    let webhook = sandbox.webhook_url();
    let oauth = [
        ("BITRIX24_PORTAL_URL", portal.as_str()),
        ("BITRIX24_ACCESS_TOKEN", ACCESS_TOKEN),
        ("RUST_LOG", "trace"),
    ];
    let hook = [
        ("BITRIX24_WEBHOOK_URL", webhook.as_str()),
        ("RUST_LOG", "trace"),
    ];
    for (args, env) in [
        (["doctor"], &oauth[..]),
        (["doctor"], &hook[..]),
        (["print-config"], &oauth[..]),
        (["print-config"], &hook[..]),
    ] {
        let out = common::command(&args, env)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        assert_clean("stdout", &String::from_utf8_lossy(&out.stdout));
        assert_clean("stderr", &String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn oauth_refresh_credentials_never_leak_at_trace_level() {
    use bitrix24_task_results_mcp::sandbox::OAuthApp;
    const CLIENT_SECRET: &str = "zq7clientsecret0flow9x";
    const REFRESH: &str = "zq7refreshtoken0flow9x";
    let sandbox = Sandbox::start(SandboxOptions {
        access_token: Some(ACCESS_TOKEN.into()),
        oauth: Some(OAuthApp {
            client_id: "local.flow.app".into(),
            client_secret: CLIENT_SECRET.into(),
            refresh_token: REFRESH.into(),
            access_token_ttl: std::time::Duration::from_secs(3600),
            ..OAuthApp::default()
        }),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json").display().to_string();
    let base = sandbox.base_url();
    let mut s = RawSession::start(
        &[],
        &[
            ("BITRIX24_PORTAL_URL", base.as_str()),
            ("BITRIX24_ACCESS_TOKEN", ACCESS_TOKEN),
            ("BITRIX24_CLIENT_ID", "local.flow.app"),
            ("BITRIX24_CLIENT_SECRET", CLIENT_SECRET),
            ("BITRIX24_REFRESH_TOKEN", REFRESH),
            ("BITRIX24_OAUTH_URL", base.as_str()),
            ("BITRIX24_TOKEN_FILE", file.as_str()),
            ("RUST_LOG", "trace"),
        ],
    );
    s.initialize().await;
    let mut answers = Vec::new();
    // The portal says the token expired: the server refreshes it and repeats the call.
    sandbox.inject("tasks.task.result.add", Fault::ExpiredToken, 1);
    let r = s
        .call(
            json!(1),
            "task_result_add",
            json!({"taskId": 51, "text": "after refresh"}),
        )
        .await;
    assert_eq!(r["result"]["isError"], false, "{r}");
    answers.push(r);
    assert!(sandbox.refresh_count() >= 1, "no refresh happened");
    // A refused refresh (invalid grant) on the next expiry is an error, not a leak.
    sandbox.inject("oauth.token", Fault::InvalidToken, 3);
    sandbox.inject("tasks.task.result.add", Fault::ExpiredToken, 3);
    answers.push(
        s.call(
            json!(2),
            "task_result_add",
            json!({"taskId": 51, "text": "x"}),
        )
        .await,
    );
    answers.push(
        s.call(json!(3), "task_result_list", json!({"taskId": 51}))
            .await,
    );
    let new_access = sandbox.access_token().unwrap();
    let new_refresh = sandbox.refresh_token().unwrap();
    let (_, lines, stderr) = s.finish().await;
    let everything = format!(
        "{}\n{}\n{stderr}",
        answers
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        lines.join("\n")
    );
    assert!(stderr.contains("TRACE"), "trace logging was on");
    for secret in [
        ACCESS_TOKEN,
        CLIENT_SECRET,
        REFRESH,
        new_access.as_str(),
        new_refresh.as_str(),
    ] {
        assert!(
            !everything.contains(secret),
            "an OAuth credential leaked: {everything:.3000}"
        );
    }
    assert_stdout_is_jsonrpc(&lines);
}
