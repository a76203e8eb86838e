//! Sign-in end to end (`--transport http --oauth`): the binary in front of a portal
//! (the sandbox, in this process, playing the portal and Bitrix24's OAuth server), a
//! headless client doing the MCP authorization flow, then rmcp's client calling tools
//! with the token it got. Each person's calls run as that person on the portal.

use crate::support::{common, http_support, sign_in_support};

use std::path::{Path, PathBuf};
use std::time::Duration;

use bitrix24_task_results_mcp::sandbox::Sandbox;
use common::{err, ok};
use http_support::{HttpServer, call, call_as, connect, spawn_http, spawn_http_on};
use serde_json::{Value, json};
use sign_in_support::{Client, free_port};

use sign_in_support::{APP_ID, APP_SECRET};

struct Team {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    port: u16,
}

impl Team {
    async fn new() -> Team {
        let port = free_port();
        let sandbox = sign_in_support::portal_for(port, None).await;
        Team {
            sandbox,
            dir: tempfile::tempdir().unwrap(),
            port,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("store.sqlite3")
    }

    async fn server(&self) -> HttpServer {
        self.replica(self.port).await
    }

    /// A server on `port` that serves the same public address and store as the first.
    async fn replica(&self, port: u16) -> HttpServer {
        let base = self.sandbox.base_url();
        let store = format!("sqlite:{}", self.db().display());
        let public = format!("http://127.0.0.1:{}", self.port);
        spawn_http_on(
            &format!("127.0.0.1:{port}"),
            &["--oauth", "--public-url", &public],
            &[
                ("BITRIX24_PORTAL_URL", &base),
                ("BITRIX24_CLIENT_ID", APP_ID),
                ("BITRIX24_CLIENT_SECRET", APP_SECRET),
                ("BITRIX24_OAUTH_URL", &base),
                ("BITRIX24_RATE", "1000"),
                ("MCP_STORE", &store),
            ],
        )
        .await
    }

    /// The Bitrix24 access tokens the portal saw (the `auth` of each REST call).
    fn portal_tokens(&self) -> Vec<String> {
        self.sandbox
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
            .filter_map(|b| b["auth"].as_str().map(str::to_string))
            .collect()
    }
}

async fn add(url: &str, token: &str, text: &str) -> rmcp::model::CallToolResult {
    let client = connect(url, Some(token))
        .await
        .expect("connect with the token");
    let r = call(
        &client,
        "task_result_add",
        json!({"taskId": 51, "text": text}),
    )
    .await;
    client.cancel().await.ok();
    r
}

fn file_bytes(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(b) = std::fs::read(PathBuf::from(p)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_person_acts_as_themselves_and_a_restart_keeps_them_signed_in() {
    let team = Team::new().await;
    let server = team.server().await;
    let url = server.mcp_url();
    let client = Client::discover_and_register(&server).await;
    let one = client.sign_in(1).await;
    let two = client.sign_in(2).await;
    assert_ne!(one.access, two.access);
    assert!(one.access.len() >= 43, "256-bit tokens");

    let r1 = ok(&add(&url, &one.access, "written by user one").await);
    assert_eq!(r1["authorId"], 1, "{r1}");
    let r2 = ok(&add(&url, &two.access, "written by user two").await);
    assert_eq!(r2["authorId"], 2, "{r2}");

    // Only a result's author may change it: user 2 cannot touch user 1's result.
    let id = r1["id"].clone();
    let denied = err(&call_as(
        &url,
        &two.access,
        "task_result_update",
        json!({"id": id, "text": "hijacked"}),
    )
    .await);
    assert!(
        denied.contains("403") || denied.to_lowercase().contains("access"),
        "{denied}"
    );
    let denied = err(&call_as(&url, &two.access, "task_result_delete", json!({"id": id})).await);
    assert!(
        denied.contains("403") || denied.to_lowercase().contains("access"),
        "{denied}"
    );
    let kept = team.sandbox.results();
    let first = kept
        .iter()
        .find(|r| r["id"] == id)
        .expect("user 1's result is still there");
    assert_eq!(first["text"], "written by user one");

    // One person's expired Bitrix24 token refreshes for that person only.
    team.sandbox.expire_access_tokens_of(1);
    ok(&call_as(&url, &one.access, "task_result_list", json!({"taskId": 51})).await);
    ok(&call_as(&url, &two.access, "task_result_list", json!({"taskId": 51})).await);
    let counts = team.sandbox.refresh_counts();
    assert_eq!(counts.get(&1), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&2).copied().unwrap_or(0), 0, "{counts:?}");

    // A restart on the same store keeps both signed in, user 1 with the rotated pair.
    let mut server = server;
    server.sigterm().await;
    // The port is taken again at once: wait until the first process is gone.
    assert!(server.wait().await.success());
    drop(server);
    let server = team.server().await;
    let url = server.mcp_url();
    let again = ok(&call_as(&url, &one.access, "task_result_list", json!({"taskId": 51})).await);
    assert!(again.to_string().contains("written by user one"));
    ok(&call_as(&url, &two.access, "task_result_list", json!({"taskId": 51})).await);

    // Nothing in the database file is a token in clear: neither ours nor Bitrix24's.
    let bytes = file_bytes(&team.db());
    let portal_tokens = team.portal_tokens();
    assert!(!portal_tokens.is_empty());
    for secret in [&one.access, &one.refresh, &two.access, &two.refresh]
        .into_iter()
        .chain(portal_tokens.iter())
        .chain([&APP_SECRET.to_string()])
    {
        assert!(
            !contains(&bytes, secret),
            "the store holds a token in clear"
        );
    }
    // Nor in the logs.
    let logs = server.stderr();
    for secret in [&one.access, &two.access]
        .into_iter()
        .chain(portal_tokens.iter())
    {
        assert!(!logs.contains(secret.as_str()), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_person_gets_401_and_a_lost_grant_says_sign_in_again() {
    let team = Team::new().await;
    let server = team.server().await;
    let url = server.mcp_url();
    let client = Client::discover_and_register(&server).await;
    let one = client.sign_in(1).await;
    let two = client.sign_in(2).await;
    ok(&call_as(&url, &one.access, "task_result_list", json!({"taskId": 51})).await);

    // `users list` and `users revoke` on the store the running server uses.
    let store = format!("sqlite:{}", team.db().display());
    let list = common::command(&["users", "list"], &[("MCP_STORE", &store)])
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("1 ")), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("2 ")), "{listed}");
    let revoke = common::command(&["users", "revoke", "1"], &[("MCP_STORE", &store)])
        .output()
        .await
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let Err(status) = connect(&url, Some(&one.access)).await else {
        panic!("a revoked person's token was accepted");
    };
    assert!(
        status.contains("401") || status.to_lowercase().contains("auth"),
        "{status}"
    );
    let (code, body) = client.refresh(&one.refresh).await;
    assert_eq!(code, 400, "{body}");
    ok(&call_as(&url, &two.access, "task_result_list", json!({"taskId": 51})).await);

    // The portal ends user 2's grant: the call says to sign in again, the next request
    // gets the 401 that starts the flow.
    team.sandbox.revoke_tokens_of(2);
    let ended = err(&call_as(&url, &two.access, "task_result_list", json!({"taskId": 51})).await);
    assert!(ended.contains("sign in again"), "{ended}");
    let raw = sign_in_support::no_redirects()
        .post(&url)
        .bearer_auth(&two.access)
        .header("accept", "application/json, text/event-stream")
        .json(&http_support::initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    assert!(
        raw.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata=")
    );
    // Signing in again works.
    let two_again = client.sign_in(2).await;
    ok(&call_as(
        &url,
        &two_again.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_alone_gives_a_newcomer_the_whole_flow() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    let server = spawn_http(&["--sandbox", "--oauth"], &[("MCP_STORE", &store)]).await;
    let client = Client::discover_and_register(&server).await;
    let two = client.sign_in(2).await;
    let added = ok(&add(&server.mcp_url(), &two.access, "from the sandbox sign-in").await);
    assert_eq!(added["authorId"], 2);
    assert!(
        server.stderr().contains("/oauth/callback"),
        "start-up names the callback"
    );
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_callback_and_checks_the_application() {
    let team = Team::new().await;
    let base = team.sandbox.base_url();
    let store = format!("sqlite:{}", team.db().display());
    let doctor = |secret: &'static str| {
        let (base, store) = (base.clone(), store.clone());
        async move {
            common::command(
                &[
                    "doctor",
                    "--transport",
                    "http",
                    "--oauth",
                    "--listen",
                    "127.0.0.1:8123",
                ],
                &[
                    ("BITRIX24_PORTAL_URL", &base),
                    ("BITRIX24_CLIENT_ID", APP_ID),
                    ("BITRIX24_CLIENT_SECRET", secret),
                    ("BITRIX24_OAUTH_URL", &base),
                    ("MCP_STORE", &store),
                ],
            )
            .output()
            .await
            .unwrap()
        }
    };
    let good = doctor(APP_SECRET).await;
    let text = String::from_utf8_lossy(&good.stdout).to_string();
    assert!(good.status.success(), "{text}");
    assert!(
        text.contains("register http://127.0.0.1:8123/oauth/callback"),
        "{text}"
    );
    assert!(text.contains("knows the application"), "{text}");
    assert!(!text.contains(APP_SECRET));
    let bad = doctor("not-the-secret-0000000000").await;
    let text = String::from_utf8_lossy(&bad.stdout).to_string();
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("invalid_client"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_store_refresh_a_person_once() {
    let team = Team::new().await;
    let a = team.server().await;
    let b = team.replica(free_port()).await;
    let client = Client::discover_and_register(&a).await;
    let one = client.sign_in(1).await;
    // Both know the person before the token expires.
    ok(&call_as(
        &a.mcp_url(),
        &one.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
    ok(&call_as(
        &b.mcp_url(),
        &one.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
    team.sandbox.expire_access_tokens_of(1);
    let calls = (0..6).map(|i| {
        let url = if i % 2 == 0 { a.mcp_url() } else { b.mcp_url() };
        let token = one.access.clone();
        tokio::spawn(async move {
            call_as(&url, &token, "task_result_list", json!({"taskId": 51})).await
        })
    });
    for call in calls.collect::<Vec<_>>() {
        ok(&call.await.unwrap());
    }
    assert_eq!(
        team.sandbox.refresh_counts().get(&1),
        Some(&1),
        "one refresh for both processes"
    );
}

/// The built-in sandbox keeps its users' Bitrix24 tokens in memory only: after its restart
/// the sign-ins a persistent store kept end at start-up, with the reason in the log, and
/// the old token gets the `401` that makes the client sign in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sandbox_ends_its_old_sign_ins_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("store.sqlite3").display());
    let listen = format!("127.0.0.1:{}", free_port());
    let start = || async {
        let env = [("MCP_STORE", store.as_str())];
        spawn_http_on(&listen, &["--sandbox", "--oauth"], &env).await
    };
    let mut server = start().await;
    let client = Client::discover_and_register(&server).await;
    let one = client.sign_in(1).await;
    ok(&call_as(
        &server.mcp_url(),
        &one.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
    assert!(!server.stderr().contains("sandbox portal restarted"));

    server.sigterm().await;
    assert!(server.wait().await.success());
    drop(server);
    let server = start().await;
    server.wait_for_log("sandbox portal restarted").await;
    let status = sign_in_support::mcp_status(&server.mcp_url(), &one.access).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    // And signing in again works at once.
    let client = Client::discover_and_register(&server).await;
    let again = client.sign_in(1).await;
    ok(&call_as(
        &server.mcp_url(),
        &again.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
}
