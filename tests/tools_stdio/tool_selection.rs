//! Read-only mode and tool selection, end to end: the binary, rmcp's client, the sandbox.

use crate::support::common;

use bitrix24_task_results_mcp::sandbox::SandboxOptions;
use bitrix24_task_results_mcp::tools::REGISTRY;
use common::*;
use rmcp::model::CallToolRequestParams;
use serde_json::json;

async fn tool_names(s: &Session) -> Vec<String> {
    s.client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[tokio::test]
async fn read_only_hides_and_blocks_every_write_tool() {
    // Through the flag, with an allow-list that names a write tool: read-only wins.
    let sandbox = bitrix24_task_results_mcp::sandbox::Sandbox::start(SandboxOptions::default())
        .await
        .unwrap();
    let url = sandbox.webhook_url();
    let s = spawn(
        &["--read-only", "--tools", "task_result_add,task_result_list"],
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    )
    .await;
    assert_eq!(tool_names(&s).await, ["task_result_list"]);
    s.close().await;

    // Through the environment: every read-only tool and nothing else.
    let s = spawn(
        &[],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("BITRIX24_READ_ONLY", "1"),
        ],
    )
    .await;
    let names = tool_names(&s).await;
    let expected: Vec<&str> = REGISTRY
        .iter()
        .filter(|t| t.read_only())
        .map(|t| t.name())
        .collect();
    assert_eq!(names, expected);
    let tools = s.client.list_all_tools().await.unwrap();
    assert!(
        tools
            .iter()
            .all(|t| t.annotations.as_ref().unwrap().read_only_hint == Some(true))
    );

    // Called anyway: a readable isError, and nothing reaches the portal.
    for (name, args) in [
        ("task_result_add", json!({"taskId": 51, "text": "x"})),
        ("task_result_add_from_chat", json!({"messageId": 335})),
        ("task_result_update", json!({"id": 17, "text": "x"})),
        ("task_result_delete", json!({"id": 17})),
    ] {
        let e = err(&s.call(name, args).await);
        assert!(
            e.contains("read-only mode") && e.contains("BITRIX24_READ_ONLY") && e.contains(name),
            "{e}"
        );
        assert!(e.contains("Nothing was sent"), "{e}");
    }
    let before = sandbox.results();
    assert!(
        sandbox
            .requests()
            .iter()
            .all(|r| !r.path.contains("result.add")
                && !r.path.contains("result.update")
                && !r.path.contains("result.delete")),
        "a write reached the portal"
    );
    // Reads still work.
    let page = ok(&s.call("task_result_list", json!({"taskId": 51})).await);
    assert_eq!(page["taskId"], 51);
    assert_eq!(sandbox.results(), before);
    s.close().await;
}

#[tokio::test]
async fn allow_and_deny_lists_select_tools_and_others_are_unknown() {
    let (_sandbox, s) = spawn_with_sandbox(
        SandboxOptions::default(),
        &[
            (
                "BITRIX24_TOOLS",
                "task_result_list, task_result_add,task_result_delete",
            ),
            ("BITRIX24_EXCLUDE_TOOLS", "task_result_delete"),
        ],
    )
    .await;
    assert_eq!(
        tool_names(&s).await,
        ["task_result_add", "task_result_list"]
    );
    // A tool that exists but is not selected is as unknown as a misspelt one.
    let mut params = CallToolRequestParams::new("task_result_delete");
    params = params.with_arguments(json!({"id": 17}).as_object().unwrap().clone());
    let e = s.client.call_tool(params).await.unwrap_err().to_string();
    assert!(e.contains("unknown tool"), "{e}");
    ok(&s
        .call("task_result_add", json!({"taskId": 51, "text": "allowed"}))
        .await);
    s.close().await;
}

#[tokio::test]
async fn unknown_tool_names_stop_start_up_with_the_valid_names() {
    for (args, env) in [
        (vec!["--sandbox", "--tools", "task_result_ad"], vec![]),
        (
            vec!["--sandbox"],
            vec![("BITRIX24_EXCLUDE_TOOLS", "delete")],
        ),
        (vec!["--sandbox", "--read-only", "--tools", "nope"], vec![]),
    ] {
        let out = command(&args, &env)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        assert!(out.stdout.is_empty(), "stdout is the JSON-RPC channel");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unknown tool"), "{stderr}");
        for t in REGISTRY {
            assert!(stderr.contains(t.name()), "{stderr}");
        }
    }
    // A selection that leaves nothing is refused too.
    let out = command(
        &["--sandbox", "--read-only", "--tools", "task_result_add"],
        &[],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tool"));
}

#[tokio::test]
async fn read_only_env_values() {
    // Empty and the usual "no" words mean off; anything else means on (a typo errs on the safe side).
    for (value, read_only) in [
        ("", false),
        ("0", false),
        ("false", false),
        ("off", false),
        ("1", true),
        ("true", true),
        ("yes", true),
    ] {
        let out = command(&["doctor", "--sandbox"], &[("BITRIX24_READ_ONLY", value)])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{value:?}: {report}");
        assert_eq!(
            report.contains("(read-only mode)"),
            read_only,
            "{value:?}: {report}"
        );
    }
}
