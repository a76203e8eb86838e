//! `--plan unlimited` (issue 10 item 8): no client-side pacing, 503 still retried, and
//! `doctor` says pacing is off. Judged by what the sandbox received, never by timing.

use crate::support::common;

use bitrix24_task_results_mcp::sandbox::{RateLimit, SandboxOptions};
use common::*;
use serde_json::json;

const LIST: &str = "tasks.task.result.list";

#[tokio::test]
async fn doctor_says_pacing_is_off_and_overrides_are_refused() {
    let o = command(&["doctor", "--sandbox", "--plan", "unlimited"], &[])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("pacing plan: off (unlimited plan)"), "{out}");
    let o = command(
        &["--sandbox"],
        &[("BITRIX24_PLAN", "unlimited"), ("BITRIX24_RATE", "5")],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("BITRIX24_RATE") && err.contains("unlimited"),
        "{err}"
    );
}

#[tokio::test]
async fn a_burst_beyond_every_plan_reaches_the_portal_unpaced() {
    // With a 1 s budget a paced client sends its burst (48 of the standard 50) plus about
    // two more and refuses the rest unsent; unpaced, every call reaches the sandbox.
    let (sb, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[
            ("BITRIX24_PLAN", "unlimited"),
            ("BITRIX24_CALL_BUDGET", "1"),
        ],
    )
    .await;
    let n = 120;
    let calls = (0..n).map(|_| s.call("task_result_list", json!({"taskId": 51})));
    let outcomes = futures::future::join_all(calls).await;
    for o in &outcomes {
        ok(o);
    }
    assert_eq!(requests_for(&sb, LIST).len(), n);
    s.close().await;
}

#[tokio::test]
async fn a_503_is_still_retried_without_pacing() {
    // A portal that does limit after all (burst 10, 20/s): the first attempts beyond its
    // burst are refused with 503 and retried until every call succeeds.
    let (sb, s) = spawn_with_sandbox(
        SandboxOptions {
            rate: Some(RateLimit {
                drain_per_sec: 20.0,
                burst: 10,
            }),
            ..SandboxOptions::default()
        },
        &[("BITRIX24_PLAN", "unlimited")],
    )
    .await;
    let n = 40;
    let calls = (0..n).map(|_| s.call("task_result_list", json!({"taskId": 51})));
    for o in futures::future::join_all(calls).await {
        ok(&o);
    }
    let reqs = requests_for(&sb, LIST);
    let refused = reqs.iter().filter(|r| r.status == 503).count();
    assert_eq!(reqs.iter().filter(|r| r.status == 200).count(), n);
    assert!(
        refused > 0,
        "the unpaced burst never met the sandbox's limit"
    );
    assert_eq!(reqs.len(), n + refused);
    s.close().await;
}
