//! The operating-limit memory shared through Redis (issue 13), against a real
//! `redis-server` that each test starts on a free loopback port and the in-process
//! sandbox portal.
//!
//! Two `bitrix::Client`s on one Redis stand for two replicas. The probe interval is not
//! waited out: deleting the probe claim is what its expiry does, so nothing is timed.

use crate::support::redis_support;

use std::sync::Arc;
use std::time::Duration;

use bitrix24_task_results_mcp::bitrix::retry::{Admit, unix_now};
use bitrix24_task_results_mcp::bitrix::{
    CallError, Caller, Client, ClientOptions, Effect, Endpoint, Rate, SharedGate,
};
use bitrix24_task_results_mcp::replicas::gate::{KEY_PREFIX, RedisGate};
use bitrix24_task_results_mcp::sandbox::{Fault, Sandbox, SandboxOptions};
use redis_support::RedisServer;
use serde_json::{Value, json};

const LIST: &str = "tasks.task.result.list";
const PROBE: Duration = Duration::from_secs(15);

async fn gate(redis: &RedisServer) -> Arc<RedisGate> {
    Arc::new(RedisGate::connect(&redis.url(0)).await.unwrap())
}

/// A replica: its own client and its own Redis connection, on the one sandbox.
async fn replica(redis: &RedisServer, sandbox: &Sandbox) -> (Client, Caller) {
    let endpoint = Endpoint::webhook(&sandbox.webhook_url()).unwrap();
    let shared: Arc<dyn SharedGate> = gate(redis).await;
    let client = Client::new(
        endpoint.portal,
        ClientOptions {
            // Pacing out of the way: this is about the operating limit.
            rate: Rate::UNLIMITED,
            shared_gate: Some(shared),
            ..ClientOptions::default()
        },
    );
    (client, endpoint.caller)
}

async fn list(replica: &(Client, Caller)) -> Result<Value, CallError> {
    let body = json!({
        "filter": [["taskId", 51]],
        "select": ["id"],
        "pagination": {"limit": 1, "offset": 0},
    });
    replica
        .0
        .call::<_, Value>(&replica.1, LIST, &body, Effect::Read)
        .await
        .map(|s| s.result)
}

/// HTTP statuses of the list calls the sandbox received, in order.
fn list_statuses(sandbox: &Sandbox) -> Vec<u16> {
    sandbox
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(LIST))
        .map(|r| r.status)
        .collect()
}

fn key_of(sandbox: &Sandbox, kind: &str) -> String {
    let origin = Endpoint::webhook(&sandbox.webhook_url())
        .unwrap()
        .portal
        .origin();
    format!("{KEY_PREFIX}{kind}:{origin}/{LIST}")
}

#[track_caller]
fn refused_locally(result: Result<Value, CallError>) -> String {
    match result {
        Err(CallError::Budget(text)) => {
            // It says when the method frees up (capped at the portal's 10-minute window).
            assert!(
                text.contains("OPERATION_TIME_LIMIT") && text.contains(" UTC (in about "),
                "{text}"
            );
            assert!(text.contains("every 15 s"), "{text}");
            text
        }
        other => panic!("expected a local refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_block_met_by_one_replica_holds_for_both_with_one_probe_per_interval() {
    let redis = RedisServer::start();
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let a = replica(&redis, &sandbox).await;
    let b = replica(&redis, &sandbox).await;
    list(&a).await.unwrap();
    list(&b).await.unwrap();

    // An hour-long block, answered twice: to A's call and to the first probe.
    sandbox.inject(
        LIST,
        Fault::OperationTimeLimit {
            reset_in: Duration::from_secs(3600),
        },
        2,
    );
    match list(&a).await {
        Err(CallError::Portal(p)) => {
            assert_eq!((p.status, p.code.as_str()), (429, "OPERATION_TIME_LIMIT"));
            // Capped at the portal's 10-minute window.
            let at = p.operating_reset_at.unwrap();
            assert!(at <= unix_now() + 600.0 && at > unix_now() + 500.0, "{at}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(list_statuses(&sandbox), [200, 200, 429]);

    // B never met the block, yet its call stays here; so does A's next one.
    let text = refused_locally(list(&b).await);
    println!("replica B, blocked by A's answer: {text}");
    refused_locally(list(&a).await);
    assert_eq!(list_statuses(&sandbox), [200, 200, 429]);

    // The claim of the next probe lasts one probe interval; the block until its end.
    let ttl = |key: String| redis.cli(&["PTTL", &key]).trim().parse::<i64>().unwrap();
    let probe_ttl = ttl(key_of(&sandbox, "probe"));
    assert!(
        probe_ttl > 0 && probe_ttl <= 15_000,
        "probe PTTL {probe_ttl}"
    );
    let block_ttl = ttl(key_of(&sandbox, "block"));
    assert!(
        block_ttl > 500_000 && block_ttl <= 601_000,
        "block PTTL {block_ttl}"
    );

    // The interval passes: both replicas call at once, one probe goes out. The portal
    // still refuses it, which renews the block and the claim.
    redis.cli(&["DEL", &key_of(&sandbox, "probe")]);
    let (ra, rb) = tokio::join!(list(&a), list(&b));
    assert!(ra.is_err() && rb.is_err(), "{ra:?} {rb:?}");
    assert_eq!(list_statuses(&sandbox), [200, 200, 429, 429]);
    refused_locally(list(&b).await);
    assert_eq!(list_statuses(&sandbox), [200, 200, 429, 429]);

    // Next interval: the portal has recovered; the probe succeeds and lifts the block
    // for both.
    redis.cli(&["DEL", &key_of(&sandbox, "probe")]);
    list(&b).await.unwrap();
    list(&a).await.unwrap();
    list(&b).await.unwrap();
    assert_eq!(list_statuses(&sandbox), [200, 200, 429, 429, 200, 200, 200]);
    assert_eq!(
        redis
            .cli(&[
                "EXISTS",
                &key_of(&sandbox, "block"),
                &key_of(&sandbox, "probe")
            ])
            .trim(),
        "0"
    );
    sandbox.shutdown();
}

/// The store's semantics on their own: a later block wins, one probe claim per interval,
/// an end in the past is open, a success clears both keys.
#[tokio::test]
async fn the_redis_gate_keeps_the_later_block_and_one_probe_claim() {
    let redis = RedisServer::start();
    let (one, two) = (gate(&redis).await, gate(&redis).await);
    let key = "https://portal.example/tasks.task.get";
    let now = unix_now();
    assert_eq!(one.admit(key, now, PROBE).await, Ok(Admit::Open));

    one.block(key, now + 300.0, PROBE).await.unwrap();
    // An earlier end does not shorten it.
    two.block(key, now + 100.0, PROBE).await.unwrap();
    let ends = |a: Admit| match a {
        Admit::Blocked(at) => at,
        other => panic!("{other:?}"),
    };
    // The blocking call was the probe of this interval.
    let at = ends(two.admit(key, now, PROBE).await.unwrap());
    assert!((at - (now + 300.0)).abs() < 0.01, "{at} vs {}", now + 300.0);

    redis.cli(&["DEL", &format!("{KEY_PREFIX}probe:{key}")]);
    let (x, y) = tokio::join!(one.admit(key, now, PROBE), two.admit(key, now, PROBE));
    let mut answers = [x.unwrap(), y.unwrap()];
    answers.sort_by_key(|a| matches!(a, Admit::Blocked(_)));
    assert_eq!(answers[0], Admit::Probe);
    ends(answers[1]);

    // Past its end (on the caller's clock) the method is open and nothing is claimed.
    assert_eq!(one.admit(key, now + 301.0, PROBE).await, Ok(Admit::Open));

    two.clear(key).await.unwrap();
    assert_eq!(one.admit(key, now, PROBE).await, Ok(Admit::Open));
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "0");
}

#[tokio::test]
async fn redis_down_refuses_calls_unsent_and_recovers_when_it_returns() {
    let mut redis = RedisServer::start();
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let a = replica(&redis, &sandbox).await;
    list(&a).await.unwrap();

    redis.stop();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let Err(CallError::Budget(text)) = list(&a).await else {
            panic!("a call without its operating-limit check");
        };
        assert!(
            text.starts_with(&format!(
                "the shared operating-limit memory (Redis at 127.0.0.1:{}/0) is unavailable: ",
                redis.port()
            )),
            "{text}"
        );
        // Refused at once, not after the call's budget.
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        println!("with Redis down: {text} (after {:?})", started.elapsed());
    }
    assert_eq!(list_statuses(&sandbox), [200], "a call went out unchecked");

    redis.restart();
    let mut refused = 0;
    while let Err(e) = list(&a).await {
        // The call that finds the old connection dead starts the reconnection.
        refused += 1;
        assert!(refused < 20, "still refused after Redis came back: {e:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("after the restart: {refused} call(s) refused before the reconnection");
    list(&a).await.unwrap();
    assert_eq!(list_statuses(&sandbox), [200, 200, 200]);
    sandbox.shutdown();
}
