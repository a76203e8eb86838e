//! A portal answers in its own language: the next steps the model gets must be the same
//! for an English and a Russian portal, because they are keyed on codes, fields and
//! statuses only. The binary runs against the sandbox in each language over HTTP.

use crate::support::common;

use bitrix24_task_results_mcp::sandbox::{Language, SandboxOptions};
use common::*;
use serde_json::json;

/// The failing calls, one per hint that depends on a field or class.
fn calls() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        // No such task: REQUESTVALIDATION on `taskId`.
        ("task_result_add", json!({"taskId": 999999, "text": "done"})),
        // A message outside any task chat: REQUESTVALIDATION on `messageId`.
        ("task_result_add_from_chat", json!({"messageId": 900})),
        // A message that does not exist.
        ("task_result_add_from_chat", json!({"messageId": 999999})),
        // Someone else's result: ACCESSDENIED.
        ("task_result_update", json!({"id": 17, "text": "new"})),
        ("task_result_delete", json!({"id": 17})),
        // A task the caller cannot read.
        ("task_result_list", json!({"taskId": 999999})),
    ]
}

async fn next_steps(language: Language) -> (Vec<String>, String) {
    let (_sandbox, s) = spawn_with_sandbox(
        SandboxOptions {
            language,
            ..SandboxOptions::default()
        },
        &[],
    )
    .await;
    let mut steps = Vec::new();
    let mut all = String::new();
    for (tool, args) in calls() {
        let text = err(&s.call(tool, args).await);
        let step = text
            .lines()
            .find(|l| l.starts_with("Next step:"))
            .unwrap_or_else(|| panic!("{tool}: no next step in {text}"))
            .to_string();
        steps.push(step);
        all.push_str(&text);
    }
    s.close().await;
    (steps, all)
}

#[tokio::test]
async fn next_steps_do_not_depend_on_the_portals_language() {
    let (english, english_text) = next_steps(Language::English).await;
    let (russian, russian_text) = next_steps(Language::Russian).await;
    // The portal really answered in Russian, and the portal's message is passed on.
    assert!(russian_text.contains("Задача не найдена"), "{russian_text}");
    assert!(english_text.contains("Task not found"), "{english_text}");
    assert_eq!(english, russian);
    // And the hints are the specific ones, not the generic fallback.
    assert!(
        english[0].contains("no task with that id"),
        "{}",
        english[0]
    );
    assert!(
        english[1].contains("message in a task's chat"),
        "{}",
        english[1]
    );
    assert!(english[3].contains("only the author"), "{}", english[3]);
}
