//! The token endpoint and the sign-in store end to end (`--transport http --oauth` against
//! the spawned binary and the sandbox portal): refresh races that leave the person signed
//! in (one process on SQLite, two replicas on Redis), a reuse after the grace window that
//! still revokes, bounded rows after many refreshes, store and key files that another
//! user could read refused at start-up, the store key from a file, and `users list` after
//! a revocation and with a hostile domain.

use crate::support::{common, http_support, redis_support, sign_in_support};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitrix24_task_results_mcp::store::{
    BitrixTokens, Grant, IssuedToken, Person, SqliteStore, Store, StoreKey, TokenHash, TokenKind,
};
use http_support::{run_to_exit, spawn_http_on};
use redis_support::RedisServer;
use reqwest::StatusCode;
use secrecy::SecretString;
use sign_in_support::{Client, Team, Tokens, mcp_status, oauth_error, tokens};

const STORE_KEY: &str = "5a1f0e2d3c4b59687766554433221100ffeeddccbbaa99887766554433221100";

fn same_pair(a: &Tokens, b: &Tokens) -> bool {
    a.access == b.access && a.refresh == b.refresh
}

/// `mode` on `path`.
fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_refreshes_both_get_the_same_pair_and_stay_signed_in() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let url = server.mcp_url();
    let client = Client::discover_and_register(&server).await;
    let first = client.sign_in(1).await;

    // Issue 20 (3): this used to answer [200, 400] and sign the person out.
    let ((s1, b1), (s2, b2)) = tokio::join!(
        client.refresh(&first.refresh),
        client.refresh(&first.refresh)
    );
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{b1} {b2}");
    let (one, two) = (tokens(&b1), tokens(&b2));
    assert!(same_pair(&one, &two), "{b1} {b2}");
    assert_ne!(one.refresh, first.refresh);
    assert_eq!(mcp_status(&url, &one.access).await, StatusCode::OK);

    // The pair is the sign-in's own: it refreshes on.
    let (status, body) = client.refresh(&one.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        mcp_status(&url, &tokens(&body).access).await,
        StatusCode::OK
    );
    let logs = server.stderr();
    for secret in [&first.refresh, &one.access, &one.refresh] {
        assert!(!logs.contains(secret.as_str()), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_refreshes_across_two_replicas_on_redis_get_one_pair() {
    let redis = RedisServer::start();
    let env = Team::new().await;
    let public = format!("http://127.0.0.1:{}", env.port);
    let mut vars = env.portal_env();
    vars.extend([
        ("MCP_STORE", redis.url(0)),
        ("MCP_STORE_KEY", STORE_KEY.into()),
        ("MCP_PUBLIC_URL", public.clone()),
    ]);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = spawn_http_on(&format!("127.0.0.1:{}", env.port), &["--oauth"], &vars).await;
    let b = spawn_http_on("127.0.0.1:0", &["--oauth"], &vars).await;
    let client = Client::discover_and_register(&a).await;
    let first = client.sign_in(1).await;

    let resource = format!("{public}/mcp");
    let refreshes = (0..10).map(|i| {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let through = Client {
            base: base.clone(),
            client_id: client.client_id.clone(),
            http: client.http.clone(),
        };
        let (token, resource) = (first.refresh.clone(), resource.clone());
        tokio::spawn(async move {
            through
                .token_raw(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", &through.client_id),
                    ("resource", &resource),
                ])
                .await
        })
    });
    let mut pairs = Vec::new();
    for answer in futures::future::join_all(refreshes).await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        pairs.push(tokens(&body));
    }
    assert!(pairs.iter().all(|p| same_pair(p, &pairs[0])));
    for replica in [&a, &b] {
        assert_eq!(
            mcp_status(&replica.mcp_url(), &pairs[0].access).await,
            StatusCode::OK
        );
    }
    let (status, body) = client.refresh(&pairs[0].refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_after_the_grace_window_still_revokes_the_sign_in() {
    let env = Team::new().await;
    let server = env.server(&["--refresh-grace", "1"], &[]).await;
    let url = server.mcp_url();
    let client = Client::discover_and_register(&server).await;
    let first = client.sign_in(1).await;
    let (status, body) = client.refresh(&first.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = tokens(&body);

    // Past the 1 s window (the store counts whole seconds).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = client.refresh(&first.refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(oauth_error(&body), "invalid_grant", "{body}");
    assert_eq!(
        mcp_status(&url, &second.access).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = client.refresh(&second.refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        server.stderr().contains("used twice"),
        "{}",
        server.stderr()
    );
}

/// Rows in `table` of the SQLite store at `db`, counted beside the running server.
fn rows(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_refreshes_leave_a_bounded_number_of_rows() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let mut current = client.sign_in(1).await;
    for _ in 0..50 {
        let (status, body) = client.refresh(&current.refresh).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        current = tokens(&body);
    }
    // Review L10: 2,000 refreshes used to leave 2,000 spent rows for 30 days. Now: the
    // latest spent refresh token, the live one, two generations of access tokens.
    assert_eq!(rows(&env.db(), "tokens"), 4);
    assert!(rows(&env.db(), "rotations") <= 1);
    assert_eq!(
        mcp_status(&server.mcp_url(), &current.access).await,
        StatusCode::OK
    );
}

/// Runs `--sandbox --transport http --oauth` on the store at `db` until it exits.
async fn start_on(db: &Path, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let store = format!("sqlite:{}", db.display());
    let mut vars = vec![("MCP_STORE", store.as_str())];
    vars.extend_from_slice(env);
    run_to_exit(
        &[
            "--sandbox",
            "--transport",
            "http",
            "--oauth",
            "--listen",
            "127.0.0.1:0",
        ],
        &vars,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_or_key_file_others_can_read_is_refused_at_start_up() {
    // Review L5: a planted 0666 database.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.sqlite");
    std::fs::write(&db, b"").unwrap();
    chmod(&db, 0o666);
    let (status, stderr) = start_on(&db, &[]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    // A planted 0666 key file beside a database that does not exist yet.
    let db = dir.path().join("y.sqlite");
    let key_file = dir.path().join("y.sqlite.key");
    std::fs::write(&key_file, format!("{:064x}", 1)).unwrap();
    chmod(&key_file, 0o666);
    let (status, stderr) = start_on(&db, &[]).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&key_file.display().to_string()), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_files_stay_private_under_a_permissive_umask() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite3");
    let store = format!("sqlite:{}", db.display());
    // The binary started by a shell whose umask lets everyone read and write.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(common::BIN)
        .args([
            "--sandbox",
            "--transport",
            "http",
            "--oauth",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("MCP_STORE", &store)
        .env_remove("MCP_STORE_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let started = tokio::time::timeout(http_support::HANG, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "the server did not start");
    let key_file = dir.path().join("store.sqlite3.key");
    for path in [db.clone(), key_file] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    for suffix in ["-wal", "-shm"] {
        let companion = PathBuf::from(format!("{}{suffix}", db.display()));
        if companion.exists() {
            assert_eq!(mode(&companion), 0o600, "{}", companion.display());
        }
    }
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_key_can_come_from_a_private_file() {
    let env = Team::new().await;
    let key_file = env.dir.path().join("store.key");
    std::fs::write(&key_file, format!("{STORE_KEY}\n")).unwrap();
    chmod(&key_file, 0o600);
    let key_var = key_file.display().to_string();
    let server = env
        .server(&[], &[("MCP_STORE_KEY_FILE", key_var.as_str())])
        .await;
    let client = Client::discover_and_register(&server).await;
    let t = client.sign_in(1).await;
    assert_eq!(
        mcp_status(&server.mcp_url(), &t.access).await,
        StatusCode::OK
    );
    // The key came from the file: none was made beside the database.
    assert!(!bitrix24_task_results_mcp::store::default_key_path(&env.db()).exists());
    // The store opens with that key, and `users list` reads it from the file too.
    let store = SqliteStore::open(&env.db(), StoreKey::from_hex(STORE_KEY).unwrap()).unwrap();
    assert_eq!(store.people().await.unwrap().len(), 1);
    let db = format!("sqlite:{}", env.db().display());
    let list = common::command(
        &["users", "list"],
        &[("MCP_STORE", &db), ("MCP_STORE_KEY_FILE", &key_var)],
    )
    .output()
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("1 ")), "{listed}");
    drop(server);

    // A key file others may read is refused, naming it and the fix.
    chmod(&key_file, 0o644);
    let (status, stderr) = start_on(&env.db(), &[("MCP_STORE_KEY_FILE", &key_var)]).await;
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&key_var), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains(STORE_KEY), "{stderr}");
}

#[tokio::test]
async fn help_says_to_keep_secrets_off_the_command_line() {
    let out = common::command(&["--help"], &[]).output().await.unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    // Each option's entry in the long help: its line and the lines up to the blank one.
    let entry = |flag: &str| -> String {
        let mut lines = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(flag));
        let first = lines.next().unwrap_or_else(|| panic!("{flag} in --help"));
        let rest: Vec<&str> = lines.take_while(|l| !l.trim().is_empty()).collect();
        format!("{first} {}", rest.join(" "))
    };
    for flag in [
        "--store-key <HEX>",
        "--client-secret",
        "--auth-token",
        "--access-token",
        "--webhook-url",
    ] {
        let text = entry(flag);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains("/proc/PID/cmdline"), "{flag}: {text}");
    }
    assert!(entry("--store-key-file").contains("chmod 600"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_list_after_a_revoke_shows_nobody_and_the_bitrix24_tokens_are_gone() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let t = client.sign_in(1).await;
    assert_eq!(rows(&env.db(), "people"), 1);

    let r = client
        .http
        .post(format!("{}/revoke", client.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(sign_in_support::form_body(&[
            ("token", &t.refresh),
            ("client_id", &client.client_id),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let store = format!("sqlite:{}", env.db().display());
    let list = common::command(&["users", "list"], &[("MCP_STORE", &store)])
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert_eq!(listed.trim(), "nobody is signed in");
    // Their Bitrix24 tokens left the store with their last grant.
    assert_eq!(rows(&env.db(), "people"), 0);
}

#[tokio::test]
async fn users_list_shows_control_characters_as_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite3");
    let key = StoreKey::from_hex(STORE_KEY).unwrap();
    let store = SqliteStore::open(&db, key).unwrap();
    // Review L4: a domain from the callback that forges a row and clears the screen.
    let domain =
        "evil.example\n1          9       admin.bitrix24.com    (forged row)\u{1b}[2J\u{1b}[H";
    store
        .put_person(Person {
            member_id: "m1".into(),
            user_id: 2,
            domain: domain.into(),
            tokens: BitrixTokens {
                access: SecretString::from("a"),
                refresh: SecretString::from("r"),
                expires_at: 4_000_000_000,
                server_endpoint: None,
                client_endpoint: None,
                scope: None,
            },
            last_used_at: 1_800_000_000,
            created_at: 1_800_000_000,
        })
        .await
        .unwrap();
    store
        .put_grant(Grant {
            id: "g1".into(),
            client_id: "c1".into(),
            member_id: "m1".into(),
            user_id: 2,
            resource: "http://127.0.0.1:1/mcp".into(),
            scope: None,
            created_at: 1_800_000_000,
            revoked: false,
        })
        .await
        .unwrap();
    store
        .put_token(IssuedToken {
            hash: TokenHash::of("rt"),
            grant_id: "g1".into(),
            kind: TokenKind::Refresh,
            expires_at: 4_000_000_000,
            used: false,
        })
        .await
        .unwrap();
    drop(store);

    let location = format!("sqlite:{}", db.display());
    let list = common::command(
        &["users", "list"],
        &[("MCP_STORE", &location), ("MCP_STORE_KEY", STORE_KEY)],
    )
    .output()
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row: {out:?}");
    assert!(lines[1].starts_with("2 "), "{out:?}");
    assert!(
        lines[1].contains(r"evil.example\n1 ") && lines[1].contains(r"\u{1b}[2J\u{1b}[H"),
        "{out:?}"
    );
}
