//! End to end over stdio: the binary, rmcp's client, and the sandbox over real HTTP.

use crate::support::common;

use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use bitrix24_task_results_mcp::tools::schema;
use common::*;
use serde_json::{Value, json};

const TOOLS: [(&str, &str, bool, bool, bool); 8] = [
    // name, REST method, read-only, destructive, idempotent
    ("task_search", "tasks.task.list", true, false, true),
    ("task_get", "tasks.task.get", true, false, true),
    (
        "task_result_add",
        "tasks.task.result.add",
        false,
        false,
        false,
    ),
    (
        "task_result_add_from_chat",
        "tasks.task.result.addfromchatmessage",
        false,
        false,
        false,
    ),
    (
        "task_result_update",
        "tasks.task.result.update",
        false,
        true,
        true,
    ),
    (
        "task_result_list",
        "tasks.task.result.list",
        true,
        false,
        true,
    ),
    (
        "task_result_delete",
        "tasks.task.result.delete",
        false,
        true,
        true,
    ),
    (
        "task_chat_messages_list",
        "tasks.task.get",
        true,
        false,
        true,
    ),
];

#[tokio::test]
async fn lists_eight_portable_well_described_tools() {
    let session = spawn(&["--sandbox"], &[]).await;
    let info = session.client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "bitrix24-task-results-mcp"
    );
    assert_eq!(
        info.server_info.as_ref().unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(
        instructions.contains("task_result_add") && instructions.contains("task id"),
        "{instructions}"
    );

    let tools = session.client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOLS.map(|t| t.0));
    for (name, method, read_only, destructive, idempotent) in TOOLS {
        let tool = tools.iter().find(|t| t.name == name).unwrap();
        let full = format!("mcp__bitrix24-task-results-mcp__{name}");
        assert!(full.len() <= 64, "{full} is {} characters", full.len());
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        let description = tool.description.as_deref().unwrap_or_default();
        assert!(
            description.contains(&format!("Calls {method} ")),
            "{name}: {description}"
        );
        assert!(
            description.contains("not a") || description.contains("task id"),
            "{name} must say which id is which"
        );
        assert!(
            tool.title.as_deref().is_some_and(|t| !t.is_empty()),
            "{name} has no title"
        );
        let a = tool.annotations.as_ref().expect("annotations");
        assert_eq!(a.read_only_hint, Some(read_only), "{name} readOnly");
        assert_eq!(a.destructive_hint, Some(destructive), "{name} destructive");
        assert_eq!(a.idempotent_hint, Some(idempotent), "{name} idempotent");
        assert_eq!(a.open_world_hint, Some(true), "{name} openWorld");
        assert_eq!(
            schema::violations(&tool.input_schema),
            Vec::<String>::new(),
            "{name} input"
        );
        let output = tool.output_schema.as_ref().expect("outputSchema");
        assert_eq!(
            schema::violations(output),
            Vec::<String>::new(),
            "{name} output"
        );
        assert_eq!(
            tool.input_schema.get("additionalProperties"),
            Some(&json!(false)),
            "{name}: unknown fields rejected"
        );
    }
    let update = tools
        .iter()
        .find(|t| t.name == "task_result_update")
        .unwrap();
    assert!(
        update
            .description
            .as_deref()
            .unwrap()
            .contains("Only the author")
    );
    let list = tools.iter().find(|t| t.name == "task_result_list").unwrap();
    assert!(list.description.as_deref().unwrap().contains("nextOffset"));
    assert_eq!(list.input_schema["required"], json!(["taskId"]));
    session.close().await;
}

#[tokio::test]
async fn every_tool_works_against_the_sandbox_and_changes_its_state() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;

    // add
    let added = ok(&s
        .call(
            "task_result_add",
            json!({"taskId": 51, "text": "Report sent to the client"}),
        )
        .await);
    let id = added["id"].as_u64().expect("id");
    assert_eq!(added["taskId"], 51);
    assert_eq!(added["text"], "Report sent to the client");
    assert_eq!(added["status"], "open");
    assert!(
        added.get("updatedAt").is_none(),
        "null is an absent property: {added}"
    );
    let stored = sandbox
        .results()
        .into_iter()
        .find(|r| r["id"] == id)
        .expect("stored on the sandbox");
    assert_eq!(stored["text"], "Report sent to the client");
    let req = requests_for(&sandbox, "tasks.task.result.add");
    assert_eq!(req.len(), 1);
    assert!(req[0].path.contains("/rest/api/"), "{}", req[0].path);
    assert_eq!(
        serde_json::from_str::<Value>(&req[0].body).unwrap(),
        json!({"fields": {"taskId": 51, "text": "Report sent to the client"}})
    );

    // list finds it, with the documented body
    let page = ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id),
        "{page}"
    );
    assert_eq!(page["items"][0]["id"], id, "newest first by default");
    assert!(
        page.get("nextOffset").is_none(),
        "short page is the last: {page}"
    );
    let body: Value =
        serde_json::from_str(&requests_for(&sandbox, "tasks.task.result.list")[0].body).unwrap();
    assert_eq!(body["filter"], json!([["taskId", 51]]));
    assert_eq!(body["pagination"], json!({"limit": 20, "offset": 0}));

    // update
    let updated = ok(&s
        .call(
            "task_result_update",
            json!({"id": id, "text": "Report sent and confirmed"}),
        )
        .await);
    assert_eq!(updated["text"], "Report sent and confirmed");
    assert!(updated["updatedAt"].is_string());
    let stored = sandbox
        .results()
        .into_iter()
        .find(|r| r["id"] == id)
        .unwrap();
    assert_eq!(stored["text"], "Report sent and confirmed");

    // add from a task-chat message
    let from_chat = ok(&s
        .call("task_result_add_from_chat", json!({"messageId": 335}))
        .await);
    assert_eq!(from_chat["messageId"], 335);
    assert_eq!(from_chat["taskId"], 51);

    // delete
    let deleted = ok(&s.call("task_result_delete", json!({"id": id})).await);
    assert_eq!(deleted, json!({"id": id, "deleted": true}));
    assert!(
        !sandbox.results().iter().any(|r| r["id"] == id),
        "gone from the sandbox"
    );
    s.close().await;
}

#[tokio::test]
async fn list_pages_with_next_offset() {
    let (_sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    for n in 0..5 {
        ok(&s
            .call(
                "task_result_add",
                json!({"taskId": 52, "text": format!("step {n}")}),
            )
            .await);
    }
    let first = ok(&s
        .call(
            "task_result_list",
            json!({"taskId": 52, "limit": 2, "orderDirection": "asc"}),
        )
        .await);
    assert_eq!(first["count"], 2);
    assert_eq!(first["nextOffset"], 2);
    let mut seen: Vec<Value> = first["items"].as_array().unwrap().clone();
    let mut offset = first["nextOffset"].clone();
    while !offset.is_null() {
        let page = ok(&s
            .call(
                "task_result_list",
                json!({"taskId": 52, "limit": 2, "orderDirection": "asc", "offset": offset}),
            )
            .await);
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        offset = page.get("nextOffset").cloned().unwrap_or(Value::Null);
    }
    let texts: Vec<&str> = seen.iter().map(|i| i["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["step 0", "step 1", "step 2", "step 3", "step 4"]);
    let closed = ok(&s
        .call(
            "task_result_list",
            json!({"taskId": 52, "status": "closed"}),
        )
        .await);
    assert_eq!(closed["count"], 0);
    s.close().await;
}

#[tokio::test]
async fn portal_errors_are_actionable_tool_errors() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;

    // Another user's result: only the author may update or delete.
    for (tool, args) in [
        ("task_result_update", json!({"id": 17, "text": "mine now"})),
        ("task_result_delete", json!({"id": 17})),
    ] {
        let e = err(&s.call(tool, args).await);
        assert!(
            e.contains("BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"),
            "{e}"
        );
        assert!(e.contains("HTTP 403") && e.contains("`id`"), "{e}");
        assert!(e.contains("only the author"), "{e}");
        assert!(e.contains("Next step"), "{e}");
    }
    assert!(
        sandbox
            .results()
            .iter()
            .any(|r| r["id"] == 17 && r["text"] == "Draft numbers checked")
    );

    // Unknown result id.
    let e = err(&s
        .call("task_result_update", json!({"id": 999999, "text": "x"}))
        .await);
    assert!(
        e.contains("ACCESSDENIED") && e.contains("does not exist"),
        "{e}"
    );

    // A task the user cannot see, and a task that does not exist.
    let e = err(&s
        .call("task_result_add", json!({"taskId": 53, "text": "x"}))
        .await);
    assert!(e.contains("ACCESSDENIED") && e.contains("task id"), "{e}");
    let e = err(&s
        .call("task_result_add", json!({"taskId": 987654, "text": "x"}))
        .await);
    assert!(e.contains("taskId") && e.contains("Next step"), "{e}");

    // A message outside any task chat.
    let e = err(&s
        .call("task_result_add_from_chat", json!({"messageId": 900}))
        .await);
    assert!(
        e.contains("REQUESTVALIDATION") && e.contains("messageId") && e.contains("task's chat"),
        "{e}"
    );

    // The session keeps serving.
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    s.close().await;
}

#[tokio::test]
async fn invalid_arguments_never_reach_the_portal() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    for (tool, args, field) in [
        ("task_result_add", json!({"text": "no task"}), "taskId"),
        ("task_result_add", json!({"taskId": 51}), "text"),
        ("task_result_add", json!({"taskId": 51, "text": ""}), "text"),
        (
            "task_result_add",
            json!({"taskId": 51, "text": "x", "fileIds": [1]}),
            "fileIds",
        ),
        (
            "task_result_add",
            json!({"taskId": -4, "text": "x"}),
            "taskId",
        ),
        (
            "task_result_add",
            json!({"taskId": "abc", "text": "x"}),
            "taskId",
        ),
        (
            "task_result_add_from_chat",
            json!({"messageId": 0}),
            "messageId",
        ),
        ("task_result_update", json!({"id": 17}), "text"),
        ("task_result_list", json!({}), "taskId"),
        (
            "task_result_list",
            json!({"taskId": 51, "status": "done"}),
            "status",
        ),
        (
            "task_result_list",
            json!({"taskId": 51, "limit": 1000}),
            "limit",
        ),
        ("task_result_delete", json!({"id": 1.5}), "id"),
    ] {
        let e = err(&s.call(tool, args.clone()).await);
        assert!(e.contains(field), "{tool} {args}: {e}");
        assert!(
            e.contains("Nothing was sent") && e.contains("Next step"),
            "{e}"
        );
    }
    assert!(
        sandbox.requests().is_empty(),
        "invalid calls reached the portal: {:?}",
        sandbox.requests().len()
    );
    // A numeric string id is accepted.
    ok(&s.call("task_result_list", json!({"taskId": "51"})).await);
    s.close().await;
}

#[tokio::test]
async fn unknown_tool_is_a_protocol_error_and_the_session_survives() {
    let s = spawn(&["--sandbox"], &[]).await;
    let e = s
        .client
        .call_tool(rmcp::model::CallToolRequestParams::new("no_such_tool"))
        .await
        .expect_err("unknown tool");
    assert!(e.to_string().contains("no_such_tool"), "{e}");
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    s.close().await;
}

#[tokio::test]
async fn sandbox_mode_says_so_on_stderr() {
    let s = spawn(&["--sandbox"], &[]).await;
    ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    let stderr = s.stderr();
    assert!(stderr.contains("SANDBOX"), "{stderr}");
    s.close().await;
}
