//! Replicas sharing Redis, end to end: three server processes in webhook mode on one
//! `--store redis://…` in front of one sandbox portal whose leaky bucket is 10/s burst
//! 10. Calls spread across the replicas never exceed the portal's bucket together, every
//! add is stored once, and a Redis outage fails calls cleanly until Redis is back (and
//! shows in the metrics).

use crate::support::{common, http_support, redis_support};

use std::time::{Duration, Instant};

use bitrix24_task_results_mcp::bitrix::Rate;
use bitrix24_task_results_mcp::sandbox::{RateLimit, Sandbox, SandboxOptions};
use common::{err, ok};
use http_support::{HttpServer, call, connect, spawn_http};
use redis_support::RedisServer;
use serde_json::json;

async fn replicas(
    sandbox: &Sandbox,
    redis: &RedisServer,
    n: usize,
    shared: bool,
) -> Vec<HttpServer> {
    let webhook = sandbox.webhook_url();
    let store = redis.url(0);
    let mut servers = Vec::new();
    for _ in 0..n {
        let mut env = vec![
            ("BITRIX24_WEBHOOK_URL", webhook.as_str()),
            ("BITRIX24_RATE", "10"),
            ("BITRIX24_BURST", "10"),
        ];
        if shared {
            env.push(("MCP_STORE", store.as_str()));
        }
        servers.push(spawn_http(&[], &env).await);
    }
    servers
}

/// 60 adds spread across `servers`, all at once; the wall time and how many failed.
async fn sixty_adds(servers: &[HttpServer], text: &str) -> (Duration, usize) {
    let mut clients = Vec::new();
    for s in servers {
        clients.push(std::sync::Arc::new(
            connect(&s.mcp_url(), None).await.expect("connect"),
        ));
    }
    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..60 {
        let client = clients[i % clients.len()].clone();
        let text = format!("{text} {i}");
        calls.push(tokio::spawn(async move {
            call(
                &client,
                "task_result_add",
                json!({"taskId": 51, "text": text}),
            )
            .await
        }));
    }
    let mut failed = 0;
    for c in calls {
        if c.await.unwrap().is_error == Some(true) {
            failed += 1;
        }
    }
    (started.elapsed(), failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_the_portals_bucket() {
    let redis = RedisServer::start();
    let bucket = RateLimit {
        drain_per_sec: 10.0,
        burst: 10,
    };
    let sandbox = Sandbox::start(SandboxOptions {
        rate: Some(bucket),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let servers = replicas(&sandbox, &redis, 3, true).await;
    let (took, failed) = sixty_adds(&servers, "shared").await;
    assert_eq!(failed, 0, "no call may fail");
    let stored: Vec<_> = sandbox
        .results()
        .into_iter()
        .filter(|r| r["text"].as_str().is_some_and(|t| t.starts_with("shared ")))
        .collect();
    assert_eq!(stored.len(), 60, "every add stored exactly once");
    let refused = sandbox
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert_eq!(
        refused, 0,
        "the replicas together stayed inside the portal's bucket"
    );
    // The shared bucket is the client's copy of the portal's (less its small reserve).
    let floor = Rate {
        per_sec: 10.0,
        burst: 10,
    }
    .with_reserve()
    .min_makespan(60);
    assert!(
        took >= floor,
        "{took:?} is faster than the bucket allows ({floor:?})"
    );
    let ideal = Rate {
        per_sec: 10.0,
        burst: 10,
    }
    .min_makespan(60);
    println!(
        "shared bucket: 60 adds over 3 replicas in {:.2} s; theoretical minimum {:.2} s ({:.3}x)",
        took.as_secs_f64(),
        ideal.as_secs_f64(),
        took.as_secs_f64() / ideal.as_secs_f64()
    );
    drop(servers);

    // The same run with a bucket per replica, for the record: the portal refuses.
    let sandbox2 = Sandbox::start(SandboxOptions {
        rate: Some(bucket),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let alone = replicas(&sandbox2, &redis, 3, false).await;
    let (took2, failed2) = sixty_adds(&alone, "alone").await;
    let refused2 = sandbox2
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count();
    println!(
        "a bucket per replica: 60 adds in {:.2} s, {refused2} portal refusals (503) retried, {failed2} failed calls",
        took2.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_fails_calls_cleanly_and_heals() {
    let mut redis = RedisServer::start();
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let servers = replicas(&sandbox, &redis, 1, true).await;
    let url = servers[0].mcp_url();
    let list = json!({"taskId": 51});
    let client = connect(&url, None).await.unwrap();
    ok(&call(&client, "task_result_list", list.clone()).await);
    redis.stop();
    let before = sandbox.requests().len();
    let down = err(&call(
        &client,
        "task_result_add",
        json!({"taskId": 51, "text": "during the outage"}),
    )
    .await);
    assert!(
        down.to_lowercase().contains("store") || down.to_lowercase().contains("redis"),
        "{down}"
    );
    assert_eq!(
        sandbox.requests().len(),
        before,
        "nothing reached the portal while the bucket was away"
    );
    redis.restart();
    // The connection manager reconnects by itself; give it a few tries.
    let mut healed = false;
    for _ in 0..50 {
        let r = call(&client, "task_result_list", list.clone()).await;
        if r.is_error != Some(true) {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healed, "calls work again once Redis is back");
    assert!(
        !sandbox
            .results()
            .iter()
            .any(|r| r["text"] == "during the outage")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_without_redis_says_so_and_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = format!("redis://127.0.0.1:{port}/0");
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let webhook = sandbox.webhook_url();
    let (status, stderr) = http_support::run_to_exit(
        &["--transport", "http", "--listen", "127.0.0.1:0"],
        &[
            ("BITRIX24_WEBHOOK_URL", webhook.as_str()),
            ("MCP_STORE", store.as_str()),
        ],
    )
    .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.to_lowercase().contains("redis"), "{stderr}");
}

/// A Redis outage in the metrics: the Redis errors by part, the call the gate refused
/// (it was not sent unchecked) and the tool call's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_shows_in_the_metrics() {
    use crate::support::metrics_support::{metrics_addr, sample, scrape};
    let mut redis = RedisServer::start();
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let webhook = sandbox.webhook_url();
    let store = redis.url(0);
    let server = spawn_http(
        &["--metrics-listen", "127.0.0.1:0"],
        &[
            ("BITRIX24_WEBHOOK_URL", webhook.as_str()),
            ("MCP_STORE", store.as_str()),
        ],
    )
    .await;
    let addr = metrics_addr(|| server.stderr()).await;
    let client = connect(&server.mcp_url(), None).await.unwrap();
    ok(&call(&client, "task_result_list", json!({"taskId": 51})).await);
    let before = scrape(&addr).await;
    assert_eq!(
        sample(&before, "bitrix24_mcp_redis_errors_total{part=\"gate\"}"),
        None,
        "{before}"
    );
    redis.stop();
    err(&call(
        &client,
        "task_result_add",
        json!({"taskId": 51, "text": "during the outage"}),
    )
    .await);
    let after = scrape(&addr).await;
    assert!(
        sample(&after, "bitrix24_mcp_redis_errors_total{part=\"gate\"}").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "bitrix24_mcp_portal_gate_refusals_total{method=\"tasks.task.result.add\",reason=\"unavailable\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "bitrix24_mcp_tool_calls_total{tool=\"task_result_add\",outcome=\"budget\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert!(!after.contains(&store), "{after}");
}
