//! `/readyz` and the SIGTERM drain, end to end: the binary with a real SQLite store, with a
//! real `redis-server` that is stopped and started again on its port, and a drain during
//! which a slow call started before the signal and a new call both complete while
//! `/readyz` says `draining` and `/healthz` still says `ok`.

use crate::support::{common, http_support, redis_support};

use std::time::Duration;

use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use common::ok;
use http_support::*;
use redis_support::RedisServer;
use serde_json::{Value, json};

const STORE_KEY: &str = "4f1c8e2a9b3d7f6e5a4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291807f6e";

/// `GET /readyz`: the status and the JSON body.
async fn readyz(server: &HttpServer) -> (u16, Value) {
    let reply = http()
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("GET /readyz");
    let status = reply.status().as_u16();
    let text = reply.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

/// Polls `/readyz` until it answers `status`; the last body.
async fn readyz_turns(server: &HttpServer, status: u16) -> Value {
    let found = tokio::time::timeout(HANG, async {
        loop {
            let (got, body) = readyz(server).await;
            if got == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "/readyz never answered {status}; stderr:\n{}",
            server.stderr()
        )
    })
}

#[tokio::test]
async fn ready_with_an_sqlite_store_without_token_or_host_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("store.sqlite3").display());
    let server = spawn_http(
        &["--sandbox", "--oauth"],
        &[("MCP_STORE", &store), ("MCP_STORE_KEY", STORE_KEY)],
    )
    .await;
    assert_eq!(readyz(&server).await, (200, json!({"status": "ready"})));
    // No token, and a Host no MCP route would accept: like /healthz.
    let reply = http()
        .get(format!("{}/readyz", server.base))
        .header("Host", "elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    // The MCP route itself still wants a signed-in person.
    let mcp = http()
        .post(server.mcp_url())
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(mcp.status(), 401);
}

/// `args` and `env` start a server on `redis`; `/readyz` follows Redis going away and
/// coming back on the same port, and its reason names no address.
async fn readiness_follows_redis(args: &[&str], env: &[(&str, &str)], redis: &mut RedisServer) {
    let server = spawn_http(args, env).await;
    assert_eq!(readyz(&server).await.0, 200, "{}", server.stderr());

    redis.stop();
    let body = readyz_turns(&server, 503).await;
    assert_eq!(body, json!({"status": "unavailable", "reason": "redis"}));
    // Liveness is not readiness: the process is fine, only Redis is away.
    assert_eq!(server.healthz().await.unwrap().status(), 200);

    redis.restart();
    assert_eq!(readyz_turns(&server, 200).await, json!({"status": "ready"}));
    let log = server.stderr();
    assert!(log.contains("not ready"), "{log}");
    assert!(log.contains("ready again"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_sign_in_store_that_stops_makes_the_server_unready_until_it_is_back() {
    let mut redis = RedisServer::start();
    let url = redis.url(0);
    readiness_follows_redis(
        &["--sandbox", "--oauth"],
        &[("MCP_STORE", &url), ("MCP_STORE_KEY", STORE_KEY)],
        &mut redis,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_shared_redis_counts_too_in_webhook_mode() {
    let mut redis = RedisServer::start();
    let url = redis.url(0);
    // No sign-in store: only the connection the pacing bucket and the gate use.
    readiness_follows_redis(&["--sandbox"], &[("MCP_STORE", &url)], &mut redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_serving_old_and_new_calls_then_exits_zero() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    sandbox.inject(
        "tasks.task.result.add",
        Fault::Slow(Duration::from_millis(2000)),
        1,
    );
    let mut gate = PortalGate::start(&sandbox, "tasks.task.result.add").await;
    let mut server = spawn_http(
        // Long enough that a new session and call fit in it on a busy machine.
        &["--drain-seconds", "8"],
        &[("BITRIX24_WEBHOOK_URL", gate.webhook_url.as_str())],
    )
    .await;
    assert_eq!(readyz(&server).await.0, 200);
    let client = connect(&server.mcp_url(), None).await.expect("connect");
    let slow = add_in_background(client, "started before SIGTERM");
    // The call is in flight once the portal has the request.
    gate.reached().await;
    server.sigterm().await;

    assert_eq!(
        readyz_turns(&server, 503).await,
        json!({"status": "unavailable", "reason": "draining"})
    );
    let health = server
        .healthz()
        .await
        .expect("still accepting connections while draining");
    assert_eq!(health.status(), 200);
    // While draining, answers ask kept-alive connections to go (to another replica).
    assert_eq!(health.headers()["connection"], "close");

    // A call that arrives during the drain is still served, on a new connection (an add:
    // the relay passes on only requests that name it).
    let late = connect(&server.mcp_url(), None)
        .await
        .expect("a new session during the drain");
    let added_late = ok(&call(
        &late,
        "task_result_add",
        json!({"taskId": 51, "text": "arrived during the drain"}),
    )
    .await);
    assert_eq!(added_late["text"], "arrived during the drain");
    late.cancel().await.ok();
    // The drain was still on when that call was answered.
    assert_eq!(readyz(&server).await.1["reason"], "draining");

    let (client, result) = tokio::time::timeout(HANG, slow)
        .await
        .expect("the call in flight got no answer")
        .unwrap();
    let added = ok(&result);
    assert_eq!(added["text"], "started before SIGTERM");
    assert!(sandbox.results().iter().any(|r| r["id"] == added["id"]));

    let status = server.wait().await;
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );
    let log = server.stderr();
    let drain = log
        .find("SIGTERM received: draining")
        .expect("drain logged");
    let over = log.find("drain over").expect("drain end logged");
    let stopped = log
        .find("stopped accepting connections")
        .expect("shutdown logged");
    assert!(drain < over && over < stopped, "{log}");
    drop(client);
}

#[tokio::test]
async fn sigint_and_drain_zero_stop_at_once() {
    // Ctrl-C from a terminal: no drain, whatever --drain-seconds says.
    let mut server = spawn_http(&["--sandbox", "--drain-seconds", "600"], &[]).await;
    let pid = server.child.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    assert!(server.wait().await.success());
    assert!(!server.stderr().contains("draining"), "{}", server.stderr());

    // SIGTERM with --drain-seconds 0: as before the drain existed.
    let mut server = spawn_http(&["--sandbox", "--drain-seconds", "0"], &[]).await;
    server.sigterm().await;
    assert!(server.wait().await.success());
    assert!(!server.stderr().contains("draining"), "{}", server.stderr());
}
