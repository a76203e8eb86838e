//! task_chat_messages_list and the answer-size bound, end to end over stdio against the
//! sandbox portal.

use crate::support::common;

use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use bitrix24_task_results_mcp::tools::shown::MAX_ANSWER_BYTES;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn listed_message_ids_are_accepted_by_add_from_chat() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    let page = ok(&s
        .call("task_chat_messages_list", json!({"taskId": 51}))
        .await);
    assert_eq!(page["taskId"], 51);
    assert_eq!(page["chatId"], 2537);
    let messages = page["messages"].as_array().unwrap();
    let ids: Vec<u64> = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [337, 336, 335], "newest first");
    let first = &messages[2];
    assert_eq!(first["authorId"], 1);
    assert_eq!(first["text"], "Work finished, report attached");
    assert!(first["date"].is_string() && first["authorName"].is_string());
    assert!(page.get("nextBeforeId").is_none(), "short page: {page}");

    // The REST calls match docs/bitrix24-api.md#task-chat.
    let get: Value =
        serde_json::from_str(&requests_for(&sandbox, "tasks.task.get")[0].body).unwrap();
    assert_eq!(get, json!({"id": 51, "select": ["id", "chatId"]}));
    let dialog = &requests_for(&sandbox, "im.dialog.messages.get")[0];
    assert!(
        dialog.path.contains("/rest/") && !dialog.path.contains("/rest/api/"),
        "im.* is a v1 method: {}",
        dialog.path
    );
    let body: Value = serde_json::from_str(&dialog.body).unwrap();
    assert_eq!(body, json!({"DIALOG_ID": "chat2537", "LIMIT": 20}));

    // Every id the lookup gives is one task_result_add_from_chat accepts.
    for m in messages {
        let id = m["id"].as_u64().unwrap();
        let result = ok(&s
            .call("task_result_add_from_chat", json!({"messageId": id}))
            .await);
        assert_eq!(result["taskId"], 51);
        assert_eq!(result["messageId"], id);
        assert!(
            sandbox
                .results()
                .iter()
                .any(|r| r["messageId"] == id && r["taskId"] == 51)
        );
    }
    s.close().await;
}

#[tokio::test]
async fn pages_with_next_before_id() {
    let (_sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    let first = ok(&s
        .call("task_chat_messages_list", json!({"taskId": 51, "limit": 2}))
        .await);
    assert_eq!(first["count"], 2);
    assert_eq!(first["nextBeforeId"], 336);
    let older = ok(&s
        .call(
            "task_chat_messages_list",
            json!({"taskId": "51", "limit": 2, "beforeId": 336}),
        )
        .await);
    assert_eq!(older["messages"][0]["id"], 335);
    assert_eq!(older["count"], 1);
    assert!(older.get("nextBeforeId").is_none());
    s.close().await;
}

#[tokio::test]
async fn missing_im_scope_says_so_and_what_to_do() {
    let opts = SandboxOptions {
        webhook_scopes: vec!["tasks".into(), "task".into()],
        ..SandboxOptions::default()
    };
    let (_sandbox, s) = spawn_with_sandbox(opts, &[]).await;
    let e = err(&s
        .call("task_chat_messages_list", json!({"taskId": 51}))
        .await);
    assert!(e.contains("`im` scope"), "{e}");
    assert!(e.contains("im.dialog.messages.get"), "{e}");
    assert!(
        e.contains("Inbound webhook") && e.contains("Next step"),
        "{e}"
    );
    // The task-result tools do not need it.
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    s.close().await;
}

#[tokio::test]
async fn inaccessible_or_missing_tasks_are_clear_errors() {
    let (_sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    let e = err(&s
        .call("task_chat_messages_list", json!({"taskId": 53}))
        .await);
    assert!(
        e.contains("tasks.task.get") && e.contains("no access"),
        "{e}"
    );
    let e = err(&s
        .call("task_chat_messages_list", json!({"taskId": 999}))
        .await);
    assert!(
        e.contains("tasks.task.get") && e.contains("ENTITYNOTFOUND"),
        "{e}"
    );
    let e = err(&s
        .call(
            "task_chat_messages_list",
            json!({"taskId": 51, "limit": 51}),
        )
        .await);
    assert!(e.contains("limit") && e.contains("Nothing was sent"), "{e}");
    s.close().await;
}

#[tokio::test]
async fn long_texts_are_cut_to_keep_answers_bounded() {
    let (_sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    let long = |n: usize| format!("{n:02} {}", "x".repeat(30_000 - 3));
    for n in 0..50 {
        ok(&s
            .call("task_result_add", json!({"taskId": 52, "text": long(n)}))
            .await);
    }
    let result = s
        .call(
            "task_result_list",
            json!({"taskId": 52, "limit": 50, "orderDirection": "asc"}),
        )
        .await;
    let page = ok(&result);
    let size = text(&result).len();
    assert!(size <= MAX_ANSWER_BYTES, "{size} bytes");
    assert_eq!(page["count"], 50);
    for item in page["items"].as_array().unwrap() {
        assert_eq!(item["textTruncated"], true, "{}", item["id"]);
        assert_eq!(item["textLength"], 30_000);
        let cut = item["text"].as_str().unwrap();
        assert!(cut.len() > 100 && cut.len() < 30_000, "{}", cut.len());
    }
    let note = page["note"].as_str().expect("a note says how to read more");
    assert!(
        note.contains("limit 1") && note.contains("offset"),
        "{note}"
    );

    // Following the note gives the whole text.
    let one = ok(&s
        .call(
            "task_result_list",
            json!({"taskId": 52, "limit": 1, "offset": 7, "orderDirection": "asc"}),
        )
        .await);
    assert_eq!(one["items"][0]["text"], long(7));
    assert!(one["items"][0].get("textTruncated").is_none());
    assert!(one.get("note").is_none());
    s.close().await;
}
