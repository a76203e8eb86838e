//! The portal's limits and failures, end to end: the binary over stdio with rmcp's client,
//! the sandbox over real HTTP with its leaky bucket and scripted faults. For each fault:
//! what the model sees, what the sandbox holds, and that the session keeps serving.

use crate::support::common;

use std::collections::HashSet;
use std::time::Duration;

use bitrix24_task_results_mcp::sandbox::{
    Fault, RateLimit, RecordedRequest, Sandbox, SandboxOptions,
};
use common::*;
use serde_json::{Value, json};

const ADD: &str = "tasks.task.result.add";
const UPDATE: &str = "tasks.task.result.update";
const LIST: &str = "tasks.task.result.list";

/// Pacing out of the way (fault tests are about retries, not the bucket).
const FAST: (&str, &str) = ("BITRIX24_RATE", "1000");

fn results_of(sb: &Sandbox, task: u64) -> Vec<Value> {
    sb.results()
        .into_iter()
        .filter(|r| r["taskId"] == task)
        .collect()
}

fn header<'a>(r: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn statuses(reqs: &[RecordedRequest]) -> Vec<u16> {
    reqs.iter().map(|r| r.status).collect()
}

/// The one Idempotency-Key all `reqs` carried (panics when absent or not shared).
fn shared_key(reqs: &[RecordedRequest]) -> String {
    let keys: HashSet<Option<&str>> = reqs.iter().map(|r| header(r, "idempotency-key")).collect();
    assert_eq!(keys.len(), 1, "one key for every attempt: {keys:?}");
    keys.into_iter()
        .next()
        .flatten()
        .expect("writes carry an Idempotency-Key")
        .to_string()
}

async fn list_ok(s: &Session, task: u64) -> Value {
    ok(&s
        .call("task_result_list", json!({"taskId": task, "limit": 5}))
        .await)
}

fn bucket(drain_per_sec: f64, burst: u32) -> SandboxOptions {
    SandboxOptions {
        rate: Some(RateLimit {
            drain_per_sec,
            burst,
        }),
        ..SandboxOptions::default()
    }
}

/// Fires `n` concurrent adds to `task`; returns the 503 count seen by the sandbox.
async fn burst_of_adds(sb: &Sandbox, s: &Session, task: u64, n: usize) -> usize {
    let before = results_of(sb, task).len();
    let calls = (0..n).map(|i| {
        s.call(
            "task_result_add",
            json!({"taskId": task, "text": format!("burst {i}")}),
        )
    });
    let outcomes = futures::future::join_all(calls).await;
    for outcome in &outcomes {
        let item = ok(outcome);
        assert_eq!(item["taskId"], task);
        assert!(!text(outcome).contains("QUERY_LIMIT"), "{}", text(outcome));
    }
    assert_eq!(
        results_of(sb, task).len(),
        before + n,
        "one result per call"
    );

    let adds = requests_for(sb, ADD);
    let refused: Vec<_> = adds.iter().filter(|r| r.status == 503).collect();
    let applied: Vec<_> = adds.iter().filter(|r| r.status == 200).collect();
    assert_eq!(applied.len(), n, "{:?}", statuses(&adds));
    assert_eq!(adds.len(), n + refused.len(), "{:?}", statuses(&adds));
    // Every call had its own key, and a refused attempt was retried under its call's key.
    let keys: HashSet<&str> = applied
        .iter()
        .map(|r| header(r, "idempotency-key").expect("key"))
        .collect();
    assert_eq!(keys.len(), n);
    for r in &refused {
        assert!(keys.contains(header(r, "idempotency-key").expect("key")));
    }
    refused.len()
}

#[tokio::test]
async fn sixty_concurrent_adds_are_paced_under_the_portal_bucket() {
    // The portal's 2/s burst 10 scaled up 100 times on both sides.
    let (sb, s) = spawn_with_sandbox(
        bucket(200.0, 10),
        &[("BITRIX24_RATE", "200"), ("BITRIX24_BURST", "10")],
    )
    .await;
    let refused = burst_of_adds(&sb, &s, 52, 60).await;
    // Paced, only jitter between client and sandbox can cause a refusal; at 5 ms per slot
    // a busy machine causes some, which is why the count is reported, not bounded.
    eprintln!("paced: 60 adds, {refused} attempts refused with 503 by the sandbox");
    list_ok(&s, 52).await;
    s.close().await;
}

#[tokio::test]
async fn the_client_bucket_lets_a_burst_through_then_makes_calls_wait() {
    // Burst 5 (3 after the client's reserve of 2), then one slot per 100 s: of 8
    // concurrent calls exactly 3 are sent, the
    // others would wait far past their 1 s budget and end in a clear error unsent.
    let (sb, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[
            ("BITRIX24_RATE", "0.01"),
            ("BITRIX24_BURST", "5"),
            ("BITRIX24_CALL_BUDGET", "1"),
        ],
    )
    .await;
    let calls = (0..8).map(|_| s.call("task_result_list", json!({"taskId": 51})));
    let outcomes = futures::future::join_all(calls).await;
    let sent = outcomes.iter().filter(|o| o.is_error != Some(true)).count();
    assert_eq!(sent, 3);
    for o in outcomes.iter().filter(|o| o.is_error == Some(true)) {
        let e = text(o);
        assert!(
            e.contains("was not sent") && e.contains("rate limit"),
            "{e}"
        );
        assert!(e.contains("Nothing was changed"), "{e}");
    }
    assert_eq!(requests_for(&sb, LIST).len(), 3);
    // The session itself is fine.
    assert_eq!(
        s.client.list_all_tools().await.expect("tools/list").len(),
        bitrix24_task_results_mcp::tools::REGISTRY.len()
    );
    s.close().await;
}

#[tokio::test]
async fn an_unpaced_burst_is_absorbed_by_retries() {
    // Pacing effectively off against a slow bucket (20/s, burst 10): most of the first
    // attempts are refused, and the retries absorb every refusal.
    let (sb, s) = spawn_with_sandbox(
        bucket(20.0, 10),
        &[("BITRIX24_RATE", "100000"), ("BITRIX24_BURST", "100000")],
    )
    .await;
    let refused = burst_of_adds(&sb, &s, 51, 60).await;
    eprintln!("unpaced: 60 adds, {refused} attempts refused with 503 by the sandbox");
    assert!(refused > 0, "the sandbox bucket never refused anything");
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn query_limit_exceeded_is_retried_honouring_retry_after() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    sb.inject(
        ADD,
        Fault::QueryLimitExceeded {
            retry_after: Some(1),
        },
        1,
    );
    sb.inject(ADD, Fault::QueryLimitExceeded { retry_after: None }, 2);
    let added = ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "after the limit"}),
        )
        .await);
    let adds = requests_for(&sb, ADD);
    assert_eq!(statuses(&adds), [503, 503, 503, 200]);
    shared_key(&adds);
    let mine: Vec<_> = results_of(&sb, 51)
        .into_iter()
        .filter(|r| r["text"] == "after the limit")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], added["id"]);
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn a_rate_limit_that_never_clears_ends_in_a_clear_error() {
    let (sb, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[FAST, ("BITRIX24_CALL_BUDGET", "2")],
    )
    .await;
    sb.inject(LIST, Fault::QueryLimitExceeded { retry_after: None }, 100);
    let e = err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(e.contains("QUERY_LIMIT_EXCEEDED"), "{e}");
    assert!(e.contains("Next step:") && e.contains("rate limit"), "{e}");
    let tries = requests_for(&sb, LIST).len();
    assert!(
        (2..=9).contains(&tries),
        "retried a bounded number of times: {tries}"
    );
    // Other methods still work.
    ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "still serving"}),
        )
        .await);
    s.close().await;
}

#[tokio::test]
async fn operation_time_limit_within_the_budget_is_waited_out() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    sb.inject(
        LIST,
        Fault::OperationTimeLimit {
            reset_in: Duration::from_secs(1),
        },
        1,
    );
    list_ok(&s, 51).await;
    assert_eq!(statuses(&requests_for(&sb, LIST)), [429, 200]);
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn operation_time_limit_beyond_the_budget_says_when_the_method_frees_up() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    let before = results_of(&sb, 51).len();
    sb.inject(
        ADD,
        Fault::OperationTimeLimit {
            reset_in: Duration::from_secs(600),
        },
        1,
    );
    let add = json!({"taskId": 51, "text": "blocked"});
    let e = err(&s.call("task_result_add", add.clone()).await);
    assert!(e.contains("OPERATION_TIME_LIMIT"), "{e}");
    assert!(e.contains("frees up at") && e.contains("UTC"), "{e}");
    assert_eq!(requests_for(&sb, ADD).len(), 1);

    // The method stays blocked: the next call is not sent at all.
    let e = err(&s.call("task_result_add", add).await);
    assert!(
        e.contains("was not sent") && e.contains("OPERATION_TIME_LIMIT"),
        "{e}"
    );
    assert!(e.contains("UTC"), "{e}");
    assert_eq!(requests_for(&sb, ADD).len(), 1);
    assert_eq!(results_of(&sb, 51).len(), before);

    // Other methods are not affected.
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn a_429_without_a_reset_time_uses_the_last_answers_time_block() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    // A success carries time.operating_reset_at (the sandbox's: the end of the window).
    list_ok(&s, 51).await;
    sb.inject(
        LIST,
        Fault::Raw {
            status: 429,
            content_type: "application/json".into(),
            body: br#"{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation time limit"}"#.to_vec(),
        },
        1,
    );
    let e = err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(
        e.contains("OPERATION_TIME_LIMIT") && e.contains("frees up at"),
        "{e}"
    );
    assert_eq!(statuses(&requests_for(&sb, LIST)), [200, 429]);
    ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "other methods work"}),
        )
        .await);
    s.close().await;
}

#[tokio::test]
async fn a_dropped_connection_after_an_applied_add_is_replayed_once_the_portal_has_finished() {
    // The portal lets a request run for at most 2 s here: the repeat waits that long after
    // the first attempt was sent, then gets the stored answer under the same key.
    let (sb, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[FAST, ("BITRIX24_RUN_LIMIT", "2")],
    )
    .await;
    sb.inject(ADD, Fault::DropAfterApply, 1);
    let started = std::time::Instant::now();
    let added = ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "applied once"}),
        )
        .await);
    let took = started.elapsed();
    let mine: Vec<_> = results_of(&sb, 51)
        .into_iter()
        .filter(|r| r["text"] == "applied once")
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["id"], added["id"]);
    let adds = requests_for(&sb, ADD);
    // 0 = the connection was dropped without an answer; the retry got the stored answer.
    assert_eq!(statuses(&adds), [0, 200]);
    shared_key(&adds);
    // A lower bound only (never an upper one): the repeat waited out the run limit.
    assert!(took >= Duration::from_secs(2), "repeated within {took:?}");
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn a_dropped_connection_on_a_write_is_not_repeated_while_the_portal_may_still_run_it() {
    // Default: the portal may run a request for 60 s, more than the 30 s call budget, so
    // the write is not sent again and the model is told to look before repeating it.
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    sb.inject(ADD, Fault::DropAfterApply, 1);
    let error = err(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "applied once"}),
        )
        .await);
    assert!(error.contains("task_result_list"), "{error}");
    assert_eq!(statuses(&requests_for(&sb, ADD)), [0]);
    let mine: Vec<_> = results_of(&sb, 51)
        .into_iter()
        .filter(|r| r["text"] == "applied once")
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn server_errors_on_a_write_are_retried_under_the_same_key() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    let id = ok(&s
        .call("task_result_add", json!({"taskId": 51, "text": "v1"}))
        .await)["id"]
        .clone();
    sb.inject(UPDATE, Fault::InternalError, 1);
    sb.inject(UPDATE, Fault::InternalErrorV3, 1);
    let updated = ok(&s
        .call("task_result_update", json!({"id": id, "text": "v2"}))
        .await);
    assert_eq!(updated["text"], "v2");
    let updates = requests_for(&sb, UPDATE);
    assert_eq!(statuses(&updates), [500, 500, 200]);
    shared_key(&updates);
    // Each write call has its own key.
    assert_ne!(shared_key(&requests_for(&sb, ADD)), shared_key(&updates));
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn server_errors_that_persist_end_in_an_error_that_says_to_check() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    let before = results_of(&sb, 51).len();
    sb.inject(ADD, Fault::InternalError, 10);
    let e = err(&s
        .call("task_result_add", json!({"taskId": 51, "text": "x"}))
        .await);
    assert!(e.contains("INTERNAL_SERVER_ERROR"), "{e}");
    assert!(e.contains("task_result_list"), "{e}");
    // One attempt and three retries.
    assert_eq!(requests_for(&sb, ADD).len(), 4);
    assert_eq!(results_of(&sb, 51).len(), before);
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn html_error_pages_and_slow_answers_on_reads_are_retried() {
    let (sb, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[FAST, ("BITRIX24_TIMEOUT", "1")],
    )
    .await;
    sb.inject(LIST, Fault::Html, 2);
    list_ok(&s, 51).await;
    assert_eq!(statuses(&requests_for(&sb, LIST)), [502, 502, 200]);
    // Reads carry no Idempotency-Key.
    assert!(
        requests_for(&sb, LIST)
            .iter()
            .all(|r| header(r, "idempotency-key").is_none())
    );

    // An answer slower than the request timeout: the read is simply asked again.
    sb.inject(LIST, Fault::Slow(Duration::from_secs(3)), 1);
    list_ok(&s, 52).await;
    s.close().await;
}

#[tokio::test]
async fn a_slow_write_within_the_timeout_succeeds_once() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    sb.inject(ADD, Fault::Slow(Duration::from_millis(300)), 1);
    ok(&s
        .call("task_result_add", json!({"taskId": 51, "text": "slowly"}))
        .await);
    assert_eq!(statuses(&requests_for(&sb, ADD)), [200]);
    s.close().await;
}

#[tokio::test]
async fn other_client_errors_are_never_retried() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    // A real refusal: task 53 is not visible to the webhook's user.
    let e = err(&s
        .call("task_result_add", json!({"taskId": 53, "text": "x"}))
        .await);
    assert!(e.contains("ACCESSDENIED"), "{e}");
    assert_eq!(requests_for(&sb, ADD).len(), 1);

    // 401 expired_token without OAuth refresh configured: reported, not retried.
    sb.inject(LIST, Fault::ExpiredToken, 1);
    let e = err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(
        e.contains("expired_token") && e.contains("BITRIX24_REFRESH_TOKEN"),
        "{e}"
    );
    assert_eq!(requests_for(&sb, LIST).len(), 1);

    // An arbitrary 4xx with a body that is not JSON.
    sb.inject(
        LIST,
        Fault::Raw {
            status: 418,
            content_type: "text/plain".into(),
            body: b"teapot".to_vec(),
        },
        1,
    );
    err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert_eq!(requests_for(&sb, LIST).len(), 2);
    list_ok(&s, 51).await;
    s.close().await;
}

#[tokio::test]
async fn plan_and_limit_flags_are_validated() {
    for (args, needle) in [
        (&["--rate", "0"][..], "rate"),
        (&["--burst", "0"][..], "burst"),
        (&["--plan", "gold"][..], "plan"),
        (&["--call-budget", "0"][..], "call-budget"),
    ] {
        let mut all = vec!["--sandbox"];
        all.extend_from_slice(args);
        let out = command(&all, &[])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn an_hour_long_block_is_probed_and_lifts_when_the_portal_recovers() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    sb.inject(
        LIST,
        Fault::OperationTimeLimit {
            reset_in: Duration::from_secs(3600),
        },
        1,
    );
    let e = err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(e.contains("OPERATION_TIME_LIMIT"), "{e}");
    // The block is honoured (capped at the portal's 10-minute window) ...
    let e = err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(e.contains("UTC") && e.contains("every 15 s"), "{e}");
    assert_eq!(statuses(&requests_for(&sb, LIST)), [429]);
    // ... but the portal answers again (the fault was one answer): after the probe
    // interval one call goes through, succeeds, and lifts the block.
    tokio::time::sleep(Duration::from_secs(16)).await;
    list_ok(&s, 51).await;
    list_ok(&s, 51).await;
    assert_eq!(statuses(&requests_for(&sb, LIST)), [429, 200, 200]);
    s.close().await;
}

#[tokio::test]
async fn absurd_reset_times_and_retry_after_end_in_a_bounded_error() {
    let (sb, s) = spawn_with_sandbox(SandboxOptions::default(), &[FAST]).await;
    sb.inject(
        LIST,
        Fault::Raw {
            status: 429,
            content_type: "application/json".into(),
            body: br#"{"error":"OPERATION_TIME_LIMIT","error_description":"x","operating_reset_at":1000000000000000}"#.to_vec(),
        },
        1,
    );
    let e = err(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(e.contains("OPERATION_TIME_LIMIT"), "{e}");
    // The answer names a time within the portal's window, not the year 31 million.
    assert!(!e.contains("in about 99"), "{e}");
    sb.inject(
        ADD,
        Fault::QueryLimitExceeded {
            retry_after: Some(999_999_999_999),
        },
        1,
    );
    let e = err(&s
        .call("task_result_add", json!({"taskId": 51, "text": "later"}))
        .await);
    assert!(e.contains("QUERY_LIMIT_EXCEEDED"), "{e}");
    // The server keeps serving.
    ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "still here"}),
        )
        .await);
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
    s.close().await;
}
