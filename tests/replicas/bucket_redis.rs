//! The pacing bucket shared through Redis (issue 13), against a real `redis-server` that
//! each test starts on a free loopback port.
//!
//! Three `Pacer::shared` on one key stand for three replicas: together they must stay
//! within one bucket, and three portal clients on it are never refused by a sandbox whose
//! bucket is the portal's. The bounds asserted are the GCRA's own, with a few tens of
//! milliseconds of scheduling slack; nothing else is timed.

use crate::support::redis_support;

use std::sync::Arc;
use std::time::Duration;

use bitrix24_task_results_mcp::bitrix::{
    CallError, Client, ClientOptions, Effect, Endpoint, NoSlot, PaceError, Pacer, Rate,
    SharedBucket,
};
use bitrix24_task_results_mcp::replicas::bucket::{KEY_PREFIX, RedisBucket};
use bitrix24_task_results_mcp::sandbox::{RateLimit, Sandbox, SandboxOptions};
use redis_support::RedisServer;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Timer and scheduling slack on every bound.
const SLACK: Duration = Duration::from_millis(50);
const PORTAL: Rate = Rate {
    per_sec: 10.0,
    burst: 10,
};
const KEY: &str = "https://portal.example";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn bucket(redis: &RedisServer) -> Arc<RedisBucket> {
    Arc::new(RedisBucket::connect(&redis.url(0)).await.unwrap())
}

/// Asserts that `wait` is `expected` less at most the slack (time passes between calls).
#[track_caller]
fn about(wait: Duration, expected: Duration) {
    assert!(
        wait <= expected && wait + SLACK >= expected,
        "waited {wait:?}, expected {expected:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_together_stay_within_one_bucket() {
    let redis = RedisServer::start();
    // What `Client::new` paces by: the portal's bucket less its reserve (burst 8 of 10).
    let paced = PORTAL.with_reserve();
    assert_eq!(paced.burst, 8);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        // Each replica has its own connection, as separate processes would.
        replicas.push(Arc::new(Pacer::shared(paced, bucket(&redis).await, KEY)));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let pacer = replicas[i % 3].clone();
            tokio::spawn(async move {
                pacer.acquire(deadline).await.unwrap();
                Instant::now()
            })
        })
        .collect();
    let mut sends = Vec::new();
    for t in tasks {
        sends.push(t.await.unwrap());
    }
    sends.sort();

    // In any window of length t at most burst + t * rate start (the paced bucket's bound,
    // which leaves the portal's own reserve untouched).
    for i in 0..sends.len() {
        for j in i..sends.len() {
            let t = (sends[j] - sends[i] + SLACK).as_secs_f64();
            let allowed = f64::from(paced.burst) + (t * paced.per_sec).floor();
            let count = (j - i + 1) as f64;
            assert!(
                count <= allowed,
                "{count} sends within {:?}, the bucket allows {allowed}",
                sends[j] - sends[i]
            );
        }
    }
    let makespan = *sends.last().unwrap() - sends[0];
    let minimum = PORTAL.min_makespan(60);
    println!(
        "60 acquisitions over 3 replicas: makespan {makespan:?}, portal minimum {minimum:?}, paced minimum {:?}",
        paced.min_makespan(60)
    );
    assert!(
        makespan <= minimum.mul_f64(1.1),
        "makespan {makespan:?} > 1.1 x {minimum:?}"
    );
    assert!(makespan + SLACK >= paced.min_makespan(60));
}

/// The script against the cases of `pacing.rs`'s unit tests: burst then one slot per
/// interval, a refusal that reserves nothing, a full bucket, and a key that expires.
#[tokio::test]
async fn the_script_is_the_local_gcra() {
    let redis = RedisServer::start();
    let b = bucket(&redis).await;
    let far = Duration::from_secs(60);

    // 10/s burst 3: tolerance 200 ms.
    let (interval, tolerance) = (ms(100), ms(200));
    let mut waits = Vec::new();
    for _ in 0..6 {
        waits.push(b.reserve("burst", interval, tolerance, far).await.unwrap());
    }
    for (wait, expected) in waits.into_iter().zip([0, 0, 0, 100, 200, 300]) {
        about(wait, ms(expected));
    }

    // 1/s burst 1: a slot 1 s away is refused at 0.5 s and nothing is taken.
    let (interval, tolerance) = (Duration::from_secs(1), Duration::ZERO);
    assert_eq!(
        b.reserve("refuse", interval, tolerance, Duration::ZERO)
            .await
            .unwrap(),
        Duration::ZERO
    );
    let Err(PaceError::NoSlot(NoSlot { wait })) =
        b.reserve("refuse", interval, tolerance, ms(500)).await
    else {
        panic!("a slot past the deadline was granted");
    };
    about(wait, interval);
    about(
        b.reserve("refuse", interval, tolerance, far).await.unwrap(),
        interval,
    );

    // 10/s burst 5, marked full: the next slot is one interval away, for everyone.
    let (interval, tolerance) = (ms(100), ms(400));
    b.note_full("full", interval, tolerance).await.unwrap();
    let other = bucket(&redis).await;
    about(
        other
            .reserve("full", interval, tolerance, far)
            .await
            .unwrap(),
        ms(100),
    );

    // The key lives while the bucket is not empty, and no longer.
    let client = redis::Client::open(redis.url(0)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{KEY_PREFIX}full"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // tat = now + 400 + 100 + 100 ms after the reservation; the TTL ends then (+1 ms).
    assert!(ttl > 0 && ttl <= 601, "PTTL {ttl}");

    // Unlimited never asks the store.
    let unlimited = Pacer::shared(Rate::UNLIMITED, b.clone(), "unlimited");
    unlimited.note_full().await;
    unlimited.acquire(Instant::now()).await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{KEY_PREFIX}unlimited"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn redis_down_refuses_calls_and_recovers_when_it_returns() {
    let mut redis = RedisServer::start();
    let pacer = Pacer::shared(PORTAL.with_reserve(), bucket(&redis).await, KEY);
    let deadline = Instant::now() + Duration::from_secs(600);
    pacer.acquire(deadline).await.unwrap();

    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let Err(PaceError::Unavailable(e)) = pacer.acquire(deadline).await else {
            panic!("a slot with Redis down");
        };
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "the shared rate-limit bucket (Redis at 127.0.0.1:{}/0) is unavailable: ",
                redis.port()
            )),
            "{text}"
        );
        // Refused at once, not after the call's budget.
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        println!("with Redis down: {text} (after {:?})", started.elapsed());
    }
    // Marking a dead bucket full is logged, not fatal.
    pacer.note_full().await;

    redis.restart();
    let mut refused = 0;
    while let Err(e) = pacer.acquire(deadline).await {
        // The call that finds the old connection dead starts the reconnection.
        refused += 1;
        assert!(refused < 20, "still refused after Redis came back: {e:?}");
        tokio::time::sleep(ms(100)).await;
    }
    println!("after the restart: {refused} call(s) refused before the reconnection");
    for _ in 0..5 {
        pacer.acquire(deadline).await.unwrap();
    }
}

/// Through the portal client: with Redis down a call fails with a message naming the
/// store, and nothing reaches the portal.
#[tokio::test]
async fn a_client_call_without_its_shared_bucket_is_not_sent() {
    let mut redis = RedisServer::start();
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let endpoint = Endpoint::webhook(&sandbox.webhook_url()).unwrap();
    let shared: Arc<dyn SharedBucket> = bucket(&redis).await;
    let client = Client::new(
        endpoint.portal,
        ClientOptions {
            rate: PORTAL,
            shared_bucket: Some(shared),
            ..ClientOptions::default()
        },
    );
    let add = |text: &str| json!({"fields": {"taskId": 51, "text": text}});
    client
        .call::<_, Value>(
            &endpoint.caller,
            "tasks.task.result.add",
            &add("paced"),
            Effect::Write,
        )
        .await
        .unwrap();
    let sent = sandbox.requests().len();
    assert_eq!(sent, 1);

    redis.stop();
    let err = client
        .call::<_, Value>(
            &endpoint.caller,
            "tasks.task.result.add",
            &add("unpaced"),
            Effect::Write,
        )
        .await
        .unwrap_err();
    let CallError::Budget(text) = &err else {
        panic!("{err:?}");
    };
    assert!(
        text.contains("shared rate-limit bucket (Redis at 127.0.0.1:"),
        "{text}"
    );
    assert_eq!(sandbox.requests().len(), sent, "a call went out unpaced");
    sandbox.shutdown();
}

#[tokio::test]
async fn the_redis_password_never_shows() {
    // Nothing listens on port 1: connecting fails, and says where without the credentials.
    let err = RedisBucket::connect("redis://pacer:s3cret-pw@127.0.0.1:1/2")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Redis at 127.0.0.1:1/2"), "{err}");
    assert!(
        !err.contains("s3cret-pw") && !err.contains("pacer:"),
        "{err}"
    );
}

/// Three replicas' portal clients, each with its own connection pool, send 60 adds to a
/// sandbox whose bucket is the portal's (10/s burst 10). Returns the time until the last
/// answer and the number of requests the portal refused with 503.
async fn sixty_adds(sandbox: &Sandbox, redis: Option<&RedisServer>) -> (Duration, usize) {
    let before = (sandbox.results().len(), sandbox.requests().len());
    let mut clients = Vec::new();
    let mut caller = None;
    for _ in 0..3 {
        let endpoint = Endpoint::webhook(&sandbox.webhook_url()).unwrap();
        let shared_bucket = match redis {
            Some(r) => Some(bucket(r).await as Arc<dyn SharedBucket>),
            None => None,
        };
        clients.push(Client::new(
            endpoint.portal,
            ClientOptions {
                rate: PORTAL,
                shared_bucket,
                call_budget: Duration::from_secs(120),
                ..ClientOptions::default()
            },
        ));
        caller = Some(endpoint.caller);
    }
    let caller = caller.unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let client = clients[i % 3].clone();
            let caller = caller.clone();
            tokio::spawn(async move {
                let body = json!({"fields": {"taskId": 51, "text": format!("replica write {i}")}});
                client
                    .call::<_, Value>(&caller, "tasks.task.result.add", &body, Effect::Write)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let makespan = started.elapsed();
    assert_eq!(
        sandbox.results().len() - before.0,
        60,
        "every add stored once"
    );
    let refused = sandbox.requests()[before.1..]
        .iter()
        .filter(|r| r.status == 503)
        .count();
    (makespan, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_sharing_the_bucket_are_never_refused_by_the_portal() {
    let redis = RedisServer::start();
    let rate = RateLimit {
        drain_per_sec: PORTAL.per_sec,
        burst: PORTAL.burst,
    };
    let sandbox = Sandbox::start(SandboxOptions {
        rate: Some(rate),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let (makespan, refused) = sixty_adds(&sandbox, Some(&redis)).await;
    let minimum = PORTAL.min_makespan(60);
    println!("shared bucket: 60 adds in {makespan:?} (minimum {minimum:?}), {refused} refused");
    assert_eq!(refused, 0, "the portal refused requests as over its limit");
    assert!(
        makespan <= minimum.mul_f64(1.1),
        "makespan {makespan:?} > 1.1 x {minimum:?}"
    );
    sandbox.shutdown();

    // The same without the shared store, reported only: each replica fills the bucket.
    let sandbox = Sandbox::start(SandboxOptions {
        rate: Some(rate),
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let (makespan, refused) = sixty_adds(&sandbox, None).await;
    println!("three local buckets: 60 adds in {makespan:?}, {refused} refused with 503");
    sandbox.shutdown();
}
