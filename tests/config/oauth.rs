//! OAuth access-token refresh, end to end: the binary in OAuth mode against the sandbox's
//! portal and OAuth server (BITRIX24_OAUTH_URL points at it), with a token file in a
//! temporary directory.

use crate::support::common;

use std::path::Path;

use bitrix24_task_results_mcp::sandbox::Sandbox;
use common::*;
use serde_json::json;

const CLIENT_ID: &str = "local.sandbox.app";
const CLIENT_SECRET: &str = "client-secret-0123456789abcdef";
const INITIAL_REFRESH: &str = "refresh-initial-0123456789abcdef";

/// Spawns the binary in OAuth mode. `access` is BITRIX24_ACCESS_TOKEN (`None` = unset),
/// `refresh` is BITRIX24_REFRESH_TOKEN.
async fn spawn_oauth(
    sb: &Sandbox,
    token_file: &Path,
    access: Option<&str>,
    refresh: &str,
) -> Session {
    let base = sb.base_url();
    let file = token_file.display().to_string();
    let mut env = vec![
        ("BITRIX24_PORTAL_URL", base.as_str()),
        ("BITRIX24_CLIENT_ID", CLIENT_ID),
        ("BITRIX24_CLIENT_SECRET", CLIENT_SECRET),
        ("BITRIX24_REFRESH_TOKEN", refresh),
        ("BITRIX24_OAUTH_URL", base.as_str()),
        ("BITRIX24_TOKEN_FILE", file.as_str()),
        ("BITRIX24_RATE", "1000"),
    ];
    if let Some(a) = access {
        env.push(("BITRIX24_ACCESS_TOKEN", a));
    }
    spawn(&[], &env).await
}

fn token_requests(sb: &Sandbox) -> Vec<bitrix24_task_results_mcp::sandbox::RecordedRequest> {
    sb.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/oauth/token"))
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_no_secrets(stderr: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!stderr.contains(s), "a secret leaked to stderr:\n{stderr}");
    }
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_ten_concurrent_calls() {
    let sb = oauth_sandbox(CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cfg").join("token.json");
    let initial_access = sb.access_token().unwrap();
    let s = spawn_oauth(&sb, &file, Some(&initial_access), INITIAL_REFRESH).await;

    let list = json!({"taskId": 52, "limit": 5});
    ok(&s.call("task_result_list", list.clone()).await);
    assert_eq!(sb.refresh_count(), 0);
    assert!(!file.exists(), "no refresh, no file");

    // An hour passes.
    sb.expire_access_tokens();
    let before = sb.results().iter().filter(|r| r["taskId"] == 52).count();
    let calls = (0..10).map(|i| {
        s.call(
            "task_result_add",
            json!({"taskId": 52, "text": format!("after expiry {i}")}),
        )
    });
    for outcome in futures::future::join_all(calls).await {
        ok(&outcome);
    }
    assert_eq!(sb.refresh_count(), 1, "one refresh for all ten calls");
    let after = sb.results().iter().filter(|r| r["taskId"] == 52).count();
    assert_eq!(after, before + 10, "each write applied once");

    // The refresh: one form-encoded POST, the secret in the body and never in the URL.
    let refreshes = token_requests(&sb);
    assert_eq!(refreshes.len(), 1);
    let r = &refreshes[0];
    assert_eq!(r.http_method, "POST");
    assert!(!r.path.contains('?'), "{}", r.path);
    assert!(
        r.headers.iter().any(|(k, v)| k == "content-type"
            && v.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        r.headers
    );
    assert!(r.body.contains("grant_type=refresh_token"), "{}", r.body);
    assert!(r.body.contains(&format!("refresh_token={INITIAL_REFRESH}")));

    // The token file holds the new pair, privately.
    let new_access = sb.access_token().unwrap();
    let new_refresh = sb.refresh_token().unwrap();
    assert_ne!(new_refresh, INITIAL_REFRESH);
    let stored = read_token_file(&file);
    assert_eq!(stored["access_token"], new_access.as_str());
    assert_eq!(stored["refresh_token"], new_refresh.as_str());
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);

    // Still serving, with the new token.
    ok(&s.call("task_result_list", list).await);
    let last = sb.requests().pop().unwrap();
    assert!(last.body.contains(&new_access));
    assert_no_secrets(
        &s.stderr(),
        &[
            CLIENT_SECRET,
            INITIAL_REFRESH,
            &new_refresh,
            &initial_access,
            &new_access,
        ],
    );
    s.close().await;
}

#[tokio::test]
async fn a_restart_uses_the_rotated_refresh_token_from_the_file() {
    let sb = oauth_sandbox(CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.json");
    let initial_access = sb.access_token().unwrap();
    let list = json!({"taskId": 51});

    let s = spawn_oauth(&sb, &file, Some(&initial_access), INITIAL_REFRESH).await;
    sb.expire_access_tokens();
    ok(&s.call("task_result_list", list.clone()).await);
    assert_eq!(sb.refresh_count(), 1);
    s.close().await;

    // Same environment, whose refresh token is now used up: the file's pair is used.
    let s = spawn_oauth(&sb, &file, Some(&initial_access), INITIAL_REFRESH).await;
    ok(&s.call("task_result_list", list.clone()).await);
    assert_eq!(
        sb.refresh_count(),
        1,
        "the file's access token is still valid"
    );
    sb.expire_access_tokens();
    ok(&s.call("task_result_list", list).await);
    assert_eq!(
        sb.refresh_count(),
        2,
        "refreshed with the file's refresh token"
    );
    let stored = read_token_file(&file);
    assert_eq!(
        stored["refresh_token"],
        sb.refresh_token().unwrap().as_str()
    );
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600);
    s.close().await;
}

#[tokio::test]
async fn a_missing_or_revoked_access_token_is_obtained_by_refresh() {
    let sb = oauth_sandbox(CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH).await;
    let dir = tempfile::tempdir().unwrap();

    // No BITRIX24_ACCESS_TOKEN at all: the first call refreshes first.
    let file = dir.path().join("a.json");
    let s = spawn_oauth(&sb, &file, None, INITIAL_REFRESH).await;
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert_eq!(sb.refresh_count(), 1);
    s.close().await;

    // A token the portal does not know (401 invalid_token): refreshed, then the call works.
    let rotated = sb.refresh_token().unwrap();
    let file = dir.path().join("b.json");
    let s = spawn_oauth(&sb, &file, Some("revoked-access-token-0000"), &rotated).await;
    ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "after revocation"}),
        )
        .await);
    assert_eq!(sb.refresh_count(), 2);
    let adds = requests_for(&sb, "tasks.task.result.add");
    assert_eq!(
        adds.iter().map(|r| r.status).collect::<Vec<_>>(),
        [401, 200]
    );
    s.close().await;
}

#[tokio::test]
async fn invalid_grant_is_reported_clearly_and_not_retried() {
    let sb = oauth_sandbox(CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token.json");
    let s = spawn_oauth(
        &sb,
        &file,
        Some("stale-access-token-0000"),
        "revoked-refresh-token-0000",
    )
    .await;
    for _ in 0..2 {
        let e = err(&s
            .call("task_result_add", json!({"taskId": 51, "text": "x"}))
            .await);
        assert!(e.contains("invalid_grant"), "{e}");
        assert!(e.contains("authorize the application again"), "{e}");
        assert!(e.contains("BITRIX24_REFRESH_TOKEN"), "{e}");
        assert!(!e.contains("revoked-refresh-token-0000"), "{e}");
    }
    // The dead refresh token was presented once, not once per call.
    assert_eq!(token_requests(&sb).len(), 1);
    assert_eq!(sb.refresh_count(), 0);
    assert!(!file.exists());
    assert_eq!(
        s.client.list_all_tools().await.expect("tools/list").len(),
        bitrix24_task_results_mcp::tools::REGISTRY.len()
    );
    assert_no_secrets(&s.stderr(), &[CLIENT_SECRET, "revoked-refresh-token-0000"]);
    s.close().await;
}

#[tokio::test]
async fn refresh_settings_are_checked_at_start_up() {
    for (env, needle) in [
        (
            vec![
                ("BITRIX24_PORTAL_URL", "https://p.example"),
                ("BITRIX24_CLIENT_ID", "app"),
                ("BITRIX24_REFRESH_TOKEN", "refresh-token-0000"),
            ],
            "BITRIX24_CLIENT_SECRET",
        ),
        (
            vec![
                ("BITRIX24_WEBHOOK_URL", "https://p.example/rest/1/abcdefgh/"),
                ("BITRIX24_CLIENT_ID", "app"),
                ("BITRIX24_CLIENT_SECRET", "client-secret-0000"),
            ],
            "do not apply to a webhook",
        ),
        (
            vec![
                ("BITRIX24_PORTAL_URL", "https://p.example"),
                ("BITRIX24_CLIENT_ID", "app"),
                ("BITRIX24_CLIENT_SECRET", "client-secret-0000"),
                (
                    "BITRIX24_TOKEN_FILE",
                    "/nonexistent-dir-for-test/token.json",
                ),
            ],
            "BITRIX24_REFRESH_TOKEN",
        ),
    ] {
        let out = command(&[], &env)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
        assert_no_secrets(&stderr, &["client-secret-0000", "refresh-token-0000"]);
    }
}

/// The configured identity's refreshes in the metrics, by outcome, with none of the
/// tokens or the client secret in the exposition.
#[tokio::test]
async fn refreshes_are_counted_by_outcome_without_a_token() {
    use crate::support::metrics_support::{metrics_addr, sample, scrape};
    let sb = oauth_sandbox(CLIENT_ID, CLIENT_SECRET, INITIAL_REFRESH).await;
    let dir = tempfile::tempdir().unwrap();
    let base = sb.base_url();
    let spawn_metered = |file: String, refresh: &'static str| {
        let base = base.clone();
        async move {
            spawn(
                &["--metrics-listen", "127.0.0.1:0"],
                &[
                    ("BITRIX24_PORTAL_URL", base.as_str()),
                    ("BITRIX24_CLIENT_ID", CLIENT_ID),
                    ("BITRIX24_CLIENT_SECRET", CLIENT_SECRET),
                    ("BITRIX24_REFRESH_TOKEN", refresh),
                    ("BITRIX24_OAUTH_URL", base.as_str()),
                    ("BITRIX24_TOKEN_FILE", file.as_str()),
                    ("BITRIX24_RATE", "1000"),
                ],
            )
            .await
        }
    };
    let refreshes = |exposition: &str, outcome: &str| {
        sample(
            exposition,
            &format!(
                "bitrix24_mcp_oauth_refreshes_total{{outcome=\"{outcome}\",who=\"configured\"}}"
            ),
        )
    };

    // No access token: the first call refreshes.
    let s = spawn_metered(
        dir.path().join("a.json").display().to_string(),
        INITIAL_REFRESH,
    )
    .await;
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    let exposition = scrape(&metrics_addr(|| s.stderr()).await).await;
    assert_eq!(refreshes(&exposition, "ok"), Some(1.0), "{exposition}");
    let access = sb.access_token().unwrap();
    let rotated = sb.refresh_token().unwrap();
    for secret in [
        access.as_str(),
        rotated.as_str(),
        INITIAL_REFRESH,
        CLIENT_SECRET,
    ] {
        assert!(!exposition.contains(secret), "{secret:?} in:\n{exposition}");
    }
    s.close().await;

    // A refresh token the OAuth server refuses for good.
    let s = spawn_metered(
        dir.path().join("b.json").display().to_string(),
        "revoked-refresh-token-0000",
    )
    .await;
    err(&s.call("task_result_list", json!({"taskId": 51})).await);
    let exposition = scrape(&metrics_addr(|| s.stderr()).await).await;
    assert_eq!(refreshes(&exposition, "refused"), Some(1.0), "{exposition}");
    assert_eq!(refreshes(&exposition, "ok"), None, "{exposition}");
    s.close().await;
}
