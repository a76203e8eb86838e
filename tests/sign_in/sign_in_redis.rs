//! Two replicas on one Redis store (`--store redis://…`, the same `--store-key` and
//! `--public-url`): a person signs in through replica A and calls tools through replica
//! B as themselves; a refresh through B of a token A issued works once; `users revoke`
//! on the same Redis ends their sign-in on both at once. Redis stopped mid-run: requests
//! get 503, and once it is back the same replicas work again. A Redis that cannot be
//! reached at start-up stops the server with a clear error and exit code 1; `rediss://`
//! checks the certificate.

use crate::support::{common, http_support, redis_support, sign_in_support};

use bitrix24_task_results_mcp::sandbox::Sandbox;
use common::ok;
use http_support::{HttpServer, call, call_as, connect, run_to_exit, spawn_http_on};
use redis_support::RedisServer;
use serde_json::json;
use sign_in_support::{Client, free_port};

const STORE_KEY: &str = "8f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100";

struct Replicas {
    redis: RedisServer,
    sandbox: Sandbox,
    /// Replica A's port: its address is the public URL of both.
    port_a: u16,
}

impl Replicas {
    async fn new() -> Replicas {
        Self::on(RedisServer::start()).await
    }

    async fn on(redis: RedisServer) -> Replicas {
        let port_a = free_port();
        let sandbox = sign_in_support::portal_for(port_a, None).await;
        Replicas {
            redis,
            sandbox,
            port_a,
        }
    }

    fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port_a)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = sign_in_support::portal_env(&self.sandbox);
        env.extend([
            ("MCP_STORE", self.redis.url(0)),
            ("MCP_STORE_KEY", STORE_KEY.into()),
            ("MCP_PUBLIC_URL", self.public_url()),
            // No grace window: a replayed refresh here is a reuse at once (the window
            // itself is tested in tests/sign_in/sign_in_tokens.rs).
            ("MCP_REFRESH_GRACE", "0".into()),
        ]);
        env
    }

    async fn replica(&self, port: u16) -> HttpServer {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        spawn_http_on(&format!("127.0.0.1:{port}"), &["--oauth"], &env).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_through_one_replica_a_person_calls_through_the_other() {
    let team = Replicas::new().await;
    let a = team.replica(team.port_a).await;
    let b = team.replica(free_port()).await;
    assert_ne!(a.mcp_url(), b.mcp_url());

    let client = Client::discover_and_register(&a).await;
    let one = client.sign_in(1).await;
    let two = client.sign_in(2).await;

    // Through B, as themselves.
    let r1 = ok(&call_as(
        &b.mcp_url(),
        &one.access,
        "task_result_add",
        json!({"taskId": 51, "text": "written by user one through B"}),
    )
    .await);
    assert_eq!(r1["authorId"], 1, "{r1}");
    let r2 = ok(&call_as(
        &b.mcp_url(),
        &two.access,
        "task_result_add",
        json!({"taskId": 51, "text": "written by user two through B"}),
    )
    .await);
    assert_eq!(r2["authorId"], 2, "{r2}");
    let listed = ok(&call_as(
        &a.mcp_url(),
        &one.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
    assert!(listed.to_string().contains("through B"), "{listed}");

    // A refresh token A issued rotates at B's token endpoint, once.
    let through_b = Client {
        base: b.mcp_url().trim_end_matches("/mcp").to_string(),
        client_id: client.client_id.clone(),
        http: client.http.clone(),
    };
    let resource = format!("{}/mcp", team.public_url());
    let refresh = |token: String| {
        let (through_b, resource) = (&through_b, &resource);
        async move {
            through_b
                .token_raw(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", &through_b.client_id),
                    ("resource", resource),
                ])
                .await
        }
    };
    let (code, body) = refresh(one.refresh.clone()).await;
    assert_eq!(code, 200, "{body}");
    // Replayed at A: refused, and the grant ends everywhere.
    let (code, body) = client.refresh(&one.refresh).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = refresh(one.refresh.clone()).await;
    assert_eq!(code, 400, "{body}");
    let one_again = client.sign_in(1).await;
    let (code, body) = refresh(one_again.refresh.clone()).await;
    assert_eq!(code, 200, "{body}");
    let fresh = body["access_token"].as_str().expect("a new access token");
    ok(&call_as(
        &b.mcp_url(),
        fresh,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);

    // Both replicas run stateless by default and say what legacy SSE needs.
    for replica in [&a, &b] {
        let logs = replica.stderr();
        assert!(logs.contains("runs stateless"), "{logs}");
        assert!(logs.contains("sticky sessions"), "{logs}");
        assert!(logs.contains("Redis, shared by replicas"), "{logs}");
        for secret in [&one.access, &one.refresh, &two.access] {
            assert!(!logs.contains(secret.as_str()), "a token reached the log");
        }
    }

    // `users` on the same Redis: listed, then revoked on both replicas at once.
    let env = team.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let list = common::command(&["users", "list"], &env)
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("1 ")), "{listed}");
    let revoke = common::command(&["users", "revoke", "1"], &env)
        .output()
        .await
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    for replica in [&a, &b] {
        let Err(status) = connect(&replica.mcp_url(), Some(fresh)).await else {
            panic!("a revoked person's token was accepted");
        };
        assert!(
            status.contains("401") || status.to_lowercase().contains("auth"),
            "{status}"
        );
    }
    ok(&call_as(
        &b.mcp_url(),
        &two.access,
        "task_result_list",
        json!({"taskId": 51}),
    )
    .await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_at_start_up_exits_1_with_a_clear_error() {
    let mut team = Replicas::new().await;
    team.redis.stop();
    let mut env = team.env();
    // A password in the address never reaches the error.
    let with_password = format!("redis://:pa55-w0rd-x@127.0.0.1:{}/0", team.redis.port());
    env.retain(|(k, _)| *k != "MCP_STORE");
    env.push(("MCP_STORE", with_password));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let listen = format!("127.0.0.1:{}", team.port_a);
    let (status, stderr) = run_to_exit(
        &["--transport", "http", "--listen", &listen, "--oauth"],
        &env,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        (stderr.contains("cannot open the sign-in store")
            || stderr.contains("cannot reach the Redis store"))
            && stderr.contains("Redis"),
        "{stderr}"
    );
    assert!(!stderr.contains("pa55-w0rd-x"), "{stderr}");

    // Without --store-key: refused, since every replica must share the key.
    team.redis.restart();
    let mut env = team.env();
    env.retain(|(k, _)| *k != "MCP_STORE_KEY");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stderr) = run_to_exit(
        &["--transport", "http", "--listen", &listen, "--oauth"],
        &env,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("MCP_STORE_KEY"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_meeting_one_expired_token_refresh_it_once() {
    let team = Replicas::new().await;
    let a = team.replica(team.port_a).await;
    let b = team.replica(free_port()).await;
    let client = Client::discover_and_register(&a).await;
    let one = client.sign_in(1).await;
    for replica in [&a, &b] {
        ok(&call_as(
            &replica.mcp_url(),
            &one.access,
            "task_result_list",
            json!({"taskId": 51}),
        )
        .await);
    }
    team.sandbox.expire_access_tokens_of(1);
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 { a.mcp_url() } else { b.mcp_url() };
            let token = one.access.clone();
            tokio::spawn(async move {
                call_as(&url, &token, "task_result_list", json!({"taskId": 51})).await
            })
        })
        .collect();
    for call in calls {
        ok(&call.await.unwrap());
    }
    assert_eq!(
        team.sandbox.refresh_counts().get(&1),
        Some(&1),
        "one refresh reached the OAuth server for both replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reaches_redis_over_tls_and_checks_its_certificate() {
    let team = Replicas::new().await;
    let tls = RedisServer::start_tls();
    let ca = tls.ca_file().display().to_string();
    let mut env = team.env();
    env.retain(|(k, _)| *k != "MCP_STORE");
    env.push(("MCP_STORE", tls.tls_url(0)));
    let listen = format!("127.0.0.1:{}", team.port_a);

    // The test CA is not among the system's: the certificate is refused.
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, stderr) = run_to_exit(
        &["--transport", "http", "--listen", &listen, "--oauth"],
        &pairs,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        (stderr.contains("cannot open the sign-in store")
            || stderr.contains("cannot reach the Redis store"))
            && stderr.contains("certificate"),
        "{stderr}"
    );

    // Trusted (rustls reads SSL_CERT_FILE): signed in and called over it.
    env.push(("SSL_CERT_FILE", ca));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = spawn_http_on(&listen, &["--oauth"], &pairs).await;
    let client = Client::discover_and_register(&server).await;
    let one = client.sign_in(1).await;
    let r = ok(&call_as(
        &server.mcp_url(),
        &one.access,
        "task_result_add",
        json!({"taskId": 51, "text": "stored over TLS"}),
    )
    .await);
    assert_eq!(r["authorId"], 1, "{r}");
    let logs = server.stderr();
    assert!(logs.contains(&tls.tls_url(0)), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_fails_calls_cleanly_and_its_return_is_picked_up() {
    let mut team = Replicas::on(RedisServer::start_persistent()).await;
    let a = team.replica(team.port_a).await;
    let b = team.replica(free_port()).await;
    let client = Client::discover_and_register(&a).await;
    let one = client.sign_in(1).await;
    let added = ok(&call_as(
        &b.mcp_url(),
        &one.access,
        "task_result_add",
        json!({"taskId": 51, "text": "before the outage"}),
    )
    .await);

    team.redis.stop();
    for replica in [&a, &b] {
        let Err(status) = connect(&replica.mcp_url(), Some(&one.access)).await else {
            panic!("a request was let in while the sign-in store was down");
        };
        assert!(status.contains("503"), "{status}");
    }

    // Redis returns with its data: the same replicas, not restarted, let the person in
    // again. The shared pacing bucket may fail the first call after the outage (its
    // connection is found dead only then): a clean "not sent", so the test asks again.
    team.redis.restart();
    for replica in [&b, &a] {
        let client = connect(&replica.mcp_url(), Some(&one.access))
            .await
            .expect("a replica lets the person in at once when Redis is back");
        let mut listed = None;
        for _ in 0..20 {
            let r = call(&client, "task_result_list", json!({"taskId": 51})).await;
            if r.is_error != Some(true) {
                listed = Some(ok(&r));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        client.cancel().await.ok();
        let listed = listed.expect("calls work again");
        assert!(listed.to_string().contains("before the outage"), "{listed}");
    }
    // Nothing was sent twice: the one add is stored once.
    let stored: Vec<_> = team
        .sandbox
        .results()
        .into_iter()
        .filter(|r| r["text"] == "before the outage")
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], added["id"]);
    for replica in [&a, &b] {
        let logs = replica.stderr();
        assert!(
            !logs.contains(one.access.as_str()),
            "a token reached the log"
        );
    }
}
