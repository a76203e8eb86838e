//! Prompts and the task-results resource, end to end: the binary, rmcp's client over stdio
//! and HTTP, the sandbox portal over real HTTP.

use crate::support::{common, http_support};

use bitrix24_task_results_mcp::sandbox::{Sandbox, SandboxOptions};
use common::*;
use rmcp::RoleClient;
use rmcp::model::{GetPromptRequestParams, ReadResourceRequestParams, ResourceContents};
use rmcp::service::{RunningService, ServiceError};
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

fn prompt_args(v: Value) -> GetPromptRequestParams {
    GetPromptRequestParams::new("x").with_arguments(v.as_object().cloned().unwrap())
}

async fn get_prompt(c: &Client, name: &str, args: Value) -> Result<String, rmcp::ErrorData> {
    let mut params = prompt_args(args);
    params.name = name.to_string();
    match c.get_prompt(params).await {
        Ok(r) => {
            assert_eq!(r.messages.len(), 1, "one user message");
            Ok(
                serde_json::to_value(&r.messages[0]).unwrap()["content"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        }
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("prompts/get {name}: {e}"),
    }
}

async fn read(c: &Client, uri: &str) -> Result<Value, rmcp::ErrorData> {
    match c.read_resource(ReadResourceRequestParams::new(uri)).await {
        Ok(r) => {
            assert_eq!(r.contents.len(), 1);
            let ResourceContents::TextResourceContents {
                uri: got,
                mime_type,
                text,
                ..
            } = &r.contents[0]
            else {
                panic!("text contents expected: {r:?}");
            };
            assert_eq!(got, uri);
            assert_eq!(mime_type.as_deref(), Some("application/json"));
            assert!(text.len() <= 64 * 1024, "within the answer bound");
            Ok(serde_json::from_str(text).expect("the document is JSON"))
        }
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e) => panic!("resources/read {uri}: {e}"),
    }
}

async fn prompt_names(c: &Client) -> Vec<String> {
    c.list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// Everything a client sees of prompts and resources, checked the same way on any transport.
async fn exercise(c: &Client, sandbox: &Sandbox) {
    let caps = c.peer_info().unwrap().capabilities.clone();
    assert!(
        caps.prompts.is_some() && caps.resources.is_some(),
        "{caps:?}"
    );

    let prompts = c.list_all_prompts().await.unwrap();
    insta::assert_json_snapshot!("prompts_list", prompts);
    for p in &prompts {
        let task_id = p
            .arguments
            .as_ref()
            .unwrap()
            .iter()
            .find(|a| a.name == "taskId");
        assert_eq!(task_id.unwrap().required, Some(true), "{}", p.name);
        assert!(p.description.as_ref().is_some_and(|d| d.len() > 40));
    }

    // Every prompt renders, with the task id in it; snapshots of exactly what the model reads.
    let record = get_prompt(c, "record_result", json!({"taskId": "51"}))
        .await
        .unwrap();
    insta::assert_snapshot!("record_result", record);
    let with_notes = get_prompt(
        c,
        "record_result",
        json!({"taskId": "51", "notes": "Mention the new cache."}),
    )
    .await
    .unwrap();
    assert!(with_notes.starts_with(&record) && with_notes.ends_with("Mention the new cache."));
    insta::assert_snapshot!(
        "result_from_chat",
        get_prompt(c, "result_from_chat", json!({"taskId": "51"}))
            .await
            .unwrap()
    );
    insta::assert_snapshot!(
        "review_results",
        get_prompt(c, "review_results", json!({"taskId": "51"}))
            .await
            .unwrap()
    );

    // A bad argument is -32602 naming it, for every prompt; the session goes on.
    for name in ["record_result", "result_from_chat", "review_results"] {
        for bad in [
            json!({}),
            json!({"taskId": "0"}),
            json!({"taskId": "abc"}),
            json!({"taskId": "-5"}),
        ] {
            let e = get_prompt(c, name, bad.clone()).await.unwrap_err();
            assert_eq!(e.code.0, -32602, "{name} {bad}");
            assert!(e.message.contains("`taskId`"), "{}", e.message);
        }
    }
    let e = get_prompt(c, "record_result", json!({"taskId": "51", "notes": 7}))
        .await
        .unwrap_err();
    assert!(
        e.code.0 == -32602 && e.message.contains("`notes`"),
        "{}",
        e.message
    );
    let e = get_prompt(c, "no_such_prompt", json!({"taskId": "51"}))
        .await
        .unwrap_err();
    assert_eq!(e.code.0, -32602);

    // The template.
    let templates = c.list_all_resource_templates().await.unwrap();
    insta::assert_json_snapshot!("resource_templates", templates);

    // A task with results: the same items task_result_list gives, newest first.
    for text in ["First [b]result[/b]", "Second result"] {
        ok(&call(c, "task_result_add", json!({"taskId": 51, "text": text})).await);
    }
    let listed = ok(&call(c, "task_result_list", json!({"taskId": 51})).await);
    let before = requests_for(sandbox, "tasks.task.result.list").len();
    let doc = read(c, "bitrix24://tasks/51/results").await.unwrap();
    assert_eq!(doc["taskId"], 51);
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["count"], 3);
    assert_eq!(doc["items"], listed["items"]);
    assert!(doc.get("note").is_none());
    // One page with the results, then an empty one ends the read.
    let pages = &requests_for(sandbox, "tasks.task.result.list")[before..];
    assert_eq!(pages.len(), 2, "{pages:?}");

    // A task without results reads as an empty document, not an error.
    let doc = read(c, "bitrix24://tasks/52/results").await.unwrap();
    assert_eq!(
        (doc["count"].clone(), doc["items"].clone()),
        (json!(0), json!([]))
    );

    // Denied (task 53 has only user 2) and unknown tasks: an error that says so.
    for task in [53, 999_999] {
        let e = read(c, &format!("bitrix24://tasks/{task}/results"))
            .await
            .unwrap_err();
        assert_eq!(e.code.0, -32002, "{}", e.message);
        let secret = sandbox.webhook_url();
        let secret = secret.trim_end_matches('/').rsplit('/').next().unwrap();
        assert!(
            !format!("{e:?}").contains(secret),
            "no webhook secret in errors"
        );
        assert!(
            e.message.contains(&format!("task {task}"))
                && e.message
                    .contains("denied access to the task or it does not exist"),
            "{}",
            e.message
        );
    }

    // Malformed URIs: -32602, and nothing reaches the portal.
    let before = requests_for(sandbox, "tasks.task.result.list").len();
    for uri in [
        "bitrix24://tasks/abc/results",
        "bitrix24://tasks/0/results",
        "bitrix24://tasks/51",
        "file:///etc/passwd",
    ] {
        let e = read(c, uri).await.unwrap_err();
        assert_eq!(e.code.0, -32602, "{uri}: {}", e.message);
        assert!(
            e.message.contains("malformed resource URI"),
            "{}",
            e.message
        );
    }
    assert_eq!(
        requests_for(sandbox, "tasks.task.result.list").len(),
        before
    );

    // Still serving.
    ok(&call(c, "task_result_list", json!({"taskId": 51})).await);
}

async fn call(c: &Client, name: &str, args: Value) -> rmcp::model::CallToolResult {
    http_support::call(c, name, args).await
}

#[tokio::test]
async fn prompts_and_the_resource_over_stdio() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    exercise(&s.client, &sandbox).await;
    s.close().await;
}

#[tokio::test]
async fn prompts_and_the_resource_over_http() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let webhook = sandbox.webhook_url();
    let server = http_support::spawn_http(&[], &[("BITRIX24_WEBHOOK_URL", webhook.as_str())]).await;
    let client = http_support::connect(&server.mcp_url(), None)
        .await
        .unwrap();
    exercise(&client, &sandbox).await;
    let _ = client.cancel().await;
    assert!(!server.stderr().contains("panic at "));
}

#[tokio::test]
async fn a_task_with_many_results_is_read_through_every_page() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    // 120 results straight on the portal (as other users of it would add them).
    let http = http_support::http();
    let url = sandbox.webhook_url().replace("/rest/", "/rest/api/");
    for i in 0..120 {
        let r = http
            .post(format!("{url}tasks.task.result.add"))
            .json(&json!({"fields": {"taskId": 52, "text": format!("Result number {i}")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let before = requests_for(&sandbox, "tasks.task.result.list").len();
    let doc = read(&s.client, "bitrix24://tasks/52/results")
        .await
        .unwrap();
    assert_eq!(doc["count"], 120);
    assert_eq!(doc["complete"], true);
    let ids: Vec<u64> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    // Pages of 50, 50, 20: the short one is shorter than the largest seen, so it ends.
    assert_eq!(
        requests_for(&sandbox, "tasks.task.result.list").len() - before,
        3
    );
    s.close().await;
}

#[tokio::test]
async fn prompts_follow_the_tool_selection_and_the_resource_stays() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let url = sandbox.webhook_url();
    let env = [("BITRIX24_WEBHOOK_URL", url.as_str())];

    // Read-only: only the prompt that needs no write tool.
    let s = spawn(&["--read-only"], &env).await;
    assert_eq!(prompt_names(&s.client).await, ["review_results"]);
    let e = get_prompt(&s.client, "record_result", json!({"taskId": "51"}))
        .await
        .unwrap_err();
    assert!(
        e.code.0 == -32602 && e.message.contains("not offered"),
        "{}",
        e.message
    );
    assert_eq!(
        s.client.list_all_resource_templates().await.unwrap().len(),
        1
    );
    assert!(read(&s.client, "bitrix24://tasks/51/results").await.is_ok());
    s.close().await;

    // --exclude-tools of one write tool removes the prompt that needs it.
    let s = spawn(&["--exclude-tools", "task_result_add_from_chat"], &env).await;
    assert_eq!(
        prompt_names(&s.client).await,
        ["record_result", "review_results"]
    );
    s.close().await;

    // --tools without any tool a prompt needs: no prompts, and the capability is not
    // announced (prompts/list is then "method not found"); the resource stays.
    let s = spawn(&["--tools", "task_result_update,task_result_delete"], &env).await;
    let caps = s.client.peer_info().unwrap().capabilities.clone();
    assert!(caps.prompts.is_none(), "{caps:?}");
    assert!(caps.resources.is_some(), "{caps:?}");
    match s.client.list_prompts(None).await {
        Err(ServiceError::McpError(e)) => assert_eq!(e.code.0, -32601, "{}", e.message),
        other => panic!("prompts/list without prompts: {other:?}"),
    }
    assert!(read(&s.client, "bitrix24://tasks/51/results").await.is_ok());
    s.close().await;
}
