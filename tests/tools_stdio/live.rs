//! Opt-in check against a real Bitrix24 portal. Ignored by default; run it with
//!
//! ```sh
//! BITRIX24_LIVE_WEBHOOK_URL=https://YOUR.bitrix24.com/rest/1/SECRET/ BITRIX24_LIVE_TASK_ID=51 \
//!   cargo test --test tools_stdio live:: -- --ignored --nocapture
//! ```
//!
//! It adds a result to the task, lists it, updates it and deletes it, leaving the task
//! as it was (the result is deleted even when a step in between fails). The webhook
//! needs the `tasks` scope; its user must be a member of the task.

use crate::support::common;

use common::*;
use serde_json::{Value, json};

fn result_ids(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs a real portal: set BITRIX24_LIVE_WEBHOOK_URL and BITRIX24_LIVE_TASK_ID"]
async fn add_list_update_delete_on_a_real_portal() {
    let (Ok(url), Ok(task)) = (
        std::env::var("BITRIX24_LIVE_WEBHOOK_URL"),
        std::env::var("BITRIX24_LIVE_TASK_ID"),
    ) else {
        eprintln!("skipped: BITRIX24_LIVE_WEBHOOK_URL and BITRIX24_LIVE_TASK_ID are not both set");
        return;
    };
    let task: u64 = task
        .trim()
        .parse()
        .expect("BITRIX24_LIVE_TASK_ID is a task id");
    round_trip(&url, task).await;
}

/// The same steps against the sandbox, so the live test's own logic is exercised on
/// every `cargo test`.
#[tokio::test]
async fn the_live_steps_leave_the_sandbox_task_as_it_was() {
    use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let before = sandbox.results();
    round_trip(&sandbox.webhook_url(), 51).await;
    assert_eq!(sandbox.results(), before);
    assert_eq!(requests_for(&sandbox, "tasks.task.result.delete").len(), 1);
}

async fn round_trip(url: &str, task: u64) {
    let s = spawn(&[], &[("BITRIX24_WEBHOOK_URL", url)]).await;
    let list = json!({"taskId": task, "limit": 50});
    let before = result_ids(&ok(&s.call("task_result_list", list.clone()).await));

    let marker = format!(
        "bitrix24-task-results-mcp live test {}",
        uuid::Uuid::new_v4()
    );
    let added = ok(&s
        .call("task_result_add", json!({"taskId": task, "text": marker}))
        .await);
    let id = added["id"].as_u64().expect("new result id");

    // Everything between add and delete may fail; the delete still runs.
    let checks = async {
        assert_eq!(added["taskId"], task);
        assert_eq!(added["text"], marker.as_str());
        let page = ok(&s.call("task_result_list", list.clone()).await);
        assert!(result_ids(&page).contains(&id), "listed: {page}");
        let updated = ok(&s
            .call(
                "task_result_update",
                json!({"id": id, "text": format!("{marker} (updated)")}),
            )
            .await);
        assert_eq!(updated["text"], format!("{marker} (updated)"));
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(checks)).await;
    let deleted = ok(&s.call("task_result_delete", json!({"id": id})).await);
    assert_eq!(deleted["deleted"], true);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let after = result_ids(&ok(&s.call("task_result_list", list).await));
    assert_eq!(after, before, "the task is left as it was");
    s.close().await;
}
