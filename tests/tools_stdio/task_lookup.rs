//! Finding a task (issue 21), end to end: `task_search` and `task_get` and the completion
//! of task ids, over stdio and HTTP, as the webhook's user and as a signed-in person;
//! the binary, rmcp's client, the sandbox portal over real HTTP.

use crate::support::{common, http_support, sign_in_support};

use std::time::{Duration, Instant};

use bitrix24_task_results_mcp::sandbox::{Fault, NewTask, Sandbox, SandboxOptions};
use bitrix24_task_results_mcp::tasks::{GET_SELECT, LIST_SELECT};
use common::*;
use rmcp::RoleClient;
use rmcp::model::{
    ArgumentInfo, CallToolRequestParams, CallToolResult, CompleteRequestParams, CompletionInfo,
    Reference,
};
use rmcp::service::RunningService;
use serde_json::{Value, json};

type Client = RunningService<RoleClient, ()>;

const PROMPTS: [&str; 3] = ["record_result", "result_from_chat", "review_results"];
const TEMPLATE: &str = "bitrix24://tasks/{taskId}/results";

/// A completion must come back within about a second; this leaves room for a loaded
/// machine while still failing a completion that waited for the portal.
const QUICK: Duration = Duration::from_millis(1800);

async fn call(c: &Client, name: &str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(name.to_string());
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    c.call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("tools/call {name}: {e}"))
}

fn ids(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

async fn search(c: &Client, args: Value) -> Value {
    ok(&call(c, "task_search", args).await)
}

async fn complete_ref(c: &Client, r: Reference, argument: &str, value: &str) -> CompletionInfo {
    let request = CompleteRequestParams::new(r, ArgumentInfo::new(argument, value));
    c.complete(request)
        .await
        .expect("completion/complete answers, never an error")
        .completion
}

/// The completion of `taskId` for `value` in every prompt and the template: the same
/// answer everywhere, returned once.
async fn complete_everywhere(c: &Client, value: &str) -> CompletionInfo {
    let first = complete_ref(c, Reference::for_resource(TEMPLATE), "taskId", value).await;
    for prompt in PROMPTS {
        let got = complete_ref(c, Reference::for_prompt(prompt), "taskId", value).await;
        assert_eq!(got, first, "{prompt} {value:?}");
    }
    first
}

/// The body of the last `method` call the portal received.
fn last_body(sandbox: &Sandbox, method: &str) -> Value {
    let r = requests_for(sandbox, method);
    serde_json::from_str(&r.last().expect("the portal was called").body).unwrap()
}

/// Search, get, add and completion as the webhook's user (user 1), on any transport.
async fn exercise(c: &Client, sandbox: &Sandbox) {
    let base = sandbox.base_url();

    // Defaults: my (user 1's) open tasks, most recently changed first.
    let page = search(c, json!({})).await;
    assert_eq!(ids(&page), [52, 51, 57, 56, 60, 58, 61], "{page}");
    assert_eq!(
        (
            &page["total"],
            &page["role"],
            &page["status"],
            &page["orderBy"]
        ),
        (
            &json!(7),
            &json!("member"),
            &json!("open"),
            &json!("changed")
        )
    );
    assert!(page.get("nextOffset").is_none(), "{page}");
    let body = last_body(sandbox, "tasks.task.list");
    assert_eq!(
        body,
        json!({
            "filter": {"MEMBER": 1, "!REAL_STATUS": [5, 7]},
            "select": LIST_SELECT,
            "order": {"CHANGED_DATE": "desc", "ID": "desc"},
            "start": 0
        }),
        "the portal is asked only for the shown fields"
    );
    let first = &page["items"][0];
    assert_eq!(first["title"], "Fix the login page");
    assert_eq!(first["status"], "in progress");
    assert_eq!(first["responsible"], json!({"id": 2, "name": "Other User"}));
    assert_eq!(
        first["url"],
        format!("{base}/company/personal/user/1/tasks/task/view/52/")
    );
    let waiting = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == 56)
        .unwrap();
    assert_eq!(waiting["status"], "waiting");
    assert!(waiting["deadline"].as_str().unwrap().ends_with("+03:00"));

    // By words (any case, any script), by role, by status, in another order.
    assert_eq!(ids(&search(c, json!({"query": "LOGIN"})).await), [52]);
    assert_eq!(ids(&search(c, json!({"query": "отчёт"})).await), [57]);
    assert_eq!(ids(&search(c, json!({"query": "report"})).await), [51]);
    assert_eq!(
        ids(&search(c, json!({"role": "responsible"})).await),
        [51, 57, 56, 58]
    );
    assert_eq!(
        last_body(sandbox, "tasks.task.list")["filter"],
        json!({"RESPONSIBLE_ID": 1, "!REAL_STATUS": [5, 7]})
    );
    assert_eq!(
        ids(&search(c, json!({"role": "creator"})).await),
        [52, 51, 60, 58]
    );
    let done = search(c, json!({"status": "done"})).await;
    assert_eq!(ids(&done), [54]);
    assert_eq!(done["items"][0]["status"], "done");
    assert_eq!(
        last_body(sandbox, "tasks.task.list")["filter"],
        json!({"MEMBER": 1, "REAL_STATUS": 5})
    );
    let every = search(c, json!({"role": "any", "status": "any", "orderBy": "id"})).await;
    assert_eq!(
        ids(&every),
        [61, 60, 59, 58, 57, 56, 54, 52, 51],
        "53 is hidden"
    );
    assert_eq!(last_body(sandbox, "tasks.task.list")["filter"], json!({}));
    assert_eq!(
        ids(&search(c, json!({"orderBy": "deadline"})).await),
        [56, 52, 60, 51, 57, 61, 58]
    );
    assert_eq!(
        last_body(sandbox, "tasks.task.list")["order"],
        json!({"DEADLINE": "asc", "ID": "desc"})
    );
    let bad = err(&call(c, "task_search", json!({"role": "boss"})).await);
    assert!(
        bad.contains("`role`") && bad.contains("Nothing was sent"),
        "{bad}"
    );

    // One task: chat id, result flags and rights; only the shown fields are asked for.
    let task = ok(&call(c, "task_get", json!({"taskId": 51})).await);
    assert_eq!(task["chatId"], 2537);
    assert_eq!(task["requireResult"], true);
    assert_eq!(task["containsResults"], true);
    assert_eq!(
        (&task["status"], &task["portalStatus"]),
        (&json!("open"), &json!("pending"))
    );
    assert_eq!(task["creator"], json!({"id": 1, "name": "Sandbox User"}));
    assert_eq!(task["rights"]["createResult"], true);
    assert_eq!(
        task["url"],
        format!("{base}/company/personal/user/1/tasks/task/view/51/")
    );
    assert_eq!(
        last_body(sandbox, "tasks.task.get"),
        json!({"id": 51, "select": GET_SELECT})
    );
    // A task without results gets one, and says so.
    let task = ok(&call(c, "task_get", json!({"taskId": "60"})).await);
    assert_eq!(
        (&task["containsResults"], &task["chatId"]),
        (&json!(false), &json!(2546))
    );
    ok(&call(
        c,
        "task_result_add",
        json!({"taskId": 60, "text": "Invoice sent"}),
    )
    .await);
    let task = ok(&call(c, "task_get", json!({"taskId": 60})).await);
    assert_eq!(task["containsResults"], true, "{task}");
    // A result is a change: the task moves to the top of the default order.
    assert_eq!(ids(&search(c, json!({"limit": 1})).await), [60]);

    // Hidden and unknown tasks: the documented errors, with task_search as the next step.
    let hidden = err(&call(c, "task_get", json!({"taskId": 53})).await);
    assert!(
        hidden.contains("ACCESSDENIEDEXCEPTION") && hidden.contains("HTTP 403"),
        "{hidden}"
    );
    assert!(
        hidden.contains("Next step:") && hidden.contains("task_search"),
        "{hidden}"
    );
    let unknown = err(&call(c, "task_get", json!({"taskId": 999_999})).await);
    assert!(
        unknown.contains("ENTITYNOTFOUNDEXCEPTION") && unknown.contains("HTTP 400"),
        "{unknown}"
    );
    assert!(
        unknown.contains("Next step:") && unknown.contains("task_search"),
        "{unknown}"
    );
    let secret = sandbox.webhook_url();
    let secret = secret.trim_end_matches('/').rsplit('/').next().unwrap();
    assert!(!hidden.contains(secret) && !unknown.contains(secret));

    // Completion of taskId: declared, and the same in the three prompts and the template.
    let caps = c.peer_info().unwrap().capabilities.clone();
    assert!(caps.completions.is_some(), "{caps:?}");
    let started = Instant::now();
    let fives = complete_everywhere(c, "5").await;
    assert!(started.elapsed() < QUICK * 4, "{:?}", started.elapsed());
    // Ids that start with 5, most recently changed first (60 just changed: not a 5).
    assert_eq!(fives.values, ["52", "51", "57", "56", "54", "58", "59"]);
    assert_eq!(fives.has_more, Some(false));
    assert_eq!(complete_everywhere(c, "6").await.values, ["60", "61"]);
    assert_eq!(complete_everywhere(c, "61").await.values, ["61"]);
    assert!(complete_everywhere(c, "9").await.values.is_empty());
    // Words match titles.
    assert_eq!(complete_everywhere(c, "отчёт").await.values, ["57"]);
    assert_eq!(complete_everywhere(c, "Login").await.values, ["52"]);
    // Nothing typed: my tasks, every state, newest change first.
    assert_eq!(
        complete_everywhere(c, "").await.values,
        ["60", "52", "51", "57", "56", "54", "58", "59", "61"]
    );
    // What is not a task id answers an empty list, not an error: another argument, and
    // the conformance suite's prompt.
    for (r, arg) in [
        (Reference::for_prompt("record_result"), "notes"),
        (Reference::for_prompt("test_prompt_with_arguments"), "arg1"),
        (
            Reference::for_resource("bitrix24://elsewhere/{taskId}"),
            "taskId",
        ),
    ] {
        assert!(complete_ref(c, r, arg, "5").await.values.is_empty());
    }
}

#[tokio::test]
async fn search_get_and_completion_over_stdio() {
    let (sandbox, s) = spawn_with_sandbox(SandboxOptions::default(), &[]).await;
    exercise(&s.client, &sandbox).await;
    s.close().await;
}

#[tokio::test]
async fn search_get_and_completion_over_http() {
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
async fn search_pages_through_more_than_one_portal_page() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    for i in 0..70 {
        sandbox.add_task(NewTask {
            title: format!("Batch task {i}"),
            ..NewTask::default()
        });
    }
    let url = sandbox.webhook_url();
    let s = spawn(&[], &[("BITRIX24_WEBHOOK_URL", url.as_str())]).await;
    let mut seen = Vec::new();
    let mut offset = json!(0);
    let mut pages = Vec::new();
    loop {
        let page = search(
            &s.client,
            json!({"query": "batch", "limit": 30, "offset": offset}),
        )
        .await;
        assert_eq!(page["total"], 70);
        seen.extend(ids(&page));
        pages.push(page["count"].as_u64().unwrap());
        match page.get("nextOffset") {
            Some(next) => offset = next.clone(),
            None => break,
        }
    }
    // 30 and the rest of the portal's first page of 50, then its second page.
    assert_eq!(pages, [30, 20, 20]);
    let starts: Vec<Value> = requests_for(&sandbox, "tasks.task.list")
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["start"].clone())
        .collect();
    assert_eq!(starts, [json!(0), json!(0), json!(50)]);
    assert_eq!(seen.len(), 70);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {seen:?}"
    );
    s.close().await;
}

#[tokio::test]
async fn a_page_over_64_kib_is_cut_with_a_next_offset() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let long = "Длинное название задачи ".repeat(80);
    for i in 0..50 {
        sandbox.add_task(NewTask {
            title: format!("{long}{i}"),
            ..NewTask::default()
        });
    }
    let url = sandbox.webhook_url();
    let s = spawn(&[], &[("BITRIX24_WEBHOOK_URL", url.as_str())]).await;
    let result = call(
        &s.client,
        "task_search",
        json!({"query": "Длинное", "limit": 50}),
    )
    .await;
    assert!(text(&result).len() <= 64 * 1024, "{}", text(&result).len());
    let page = ok(&result);
    let kept = page["count"].as_u64().unwrap();
    assert!(kept > 0 && kept < 50, "{kept}");
    assert_eq!(page["nextOffset"], kept);
    let note = page["note"].as_str().unwrap();
    assert!(note.contains(&format!("offset {kept}")), "{note}");
    // Nothing is lost: the rest follows from nextOffset.
    let mut seen = ids(&page);
    let mut next = page["nextOffset"].clone();
    while !next.is_null() {
        let more = search(
            &s.client,
            json!({"query": "Длинное", "limit": 50, "offset": next}),
        )
        .await;
        seen.extend(ids(&more));
        next = more.get("nextOffset").cloned().unwrap_or(Value::Null);
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 50);
    s.close().await;
}

#[tokio::test]
async fn read_only_offers_both_tools_and_completion() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let url = sandbox.webhook_url();
    let s = spawn(&["--read-only"], &[("BITRIX24_WEBHOOK_URL", url.as_str())]).await;
    let tools = s.client.list_all_tools().await.unwrap();
    for name in ["task_search", "task_get"] {
        let tool = tools.iter().find(|t| t.name == name).expect(name);
        assert_eq!(
            tool.annotations.as_ref().unwrap().read_only_hint,
            Some(true)
        );
    }
    ok(&call(&s.client, "task_search", json!({"query": "report"})).await);
    ok(&call(&s.client, "task_get", json!({"taskId": 51})).await);
    // Read-only keeps review_results, whose taskId completes.
    let got = complete_ref(
        &s.client,
        Reference::for_prompt("review_results"),
        "taskId",
        "5",
    )
    .await;
    assert!(got.values.contains(&"51".to_string()), "{got:?}");
    // A prompt not offered completes nothing.
    let got = complete_ref(
        &s.client,
        Reference::for_prompt("record_result"),
        "taskId",
        "5",
    )
    .await;
    assert!(got.values.is_empty());
    s.close().await;
}

#[tokio::test]
async fn completion_gives_twenty_with_has_more_and_stays_without_task_search() {
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    for i in 0..30 {
        sandbox.add_task(NewTask {
            title: format!("Filler {i}"),
            ..NewTask::default()
        });
    }
    let url = sandbox.webhook_url();
    // --tools without task_search: completion serves the person, not the model.
    let s = spawn(
        &["--tools", "task_result_add,task_result_list"],
        &[("BITRIX24_WEBHOOK_URL", url.as_str())],
    )
    .await;
    let names: Vec<String> = s
        .client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!names.contains(&"task_search".to_string()), "{names:?}");
    let got = complete_everywhere_offered(&s.client, "filler").await;
    assert_eq!(got.values.len(), 20);
    assert_eq!(got.has_more, Some(true));
    assert_eq!(got.total, Some(30));
    // Ids of the newest filler tasks first.
    let first: u64 = got.values[0].parse().unwrap();
    assert!(
        got.values
            .iter()
            .all(|v| v.parse::<u64>().unwrap() <= first)
    );
    let got = complete_ref(&s.client, Reference::for_resource(TEMPLATE), "taskId", "").await;
    assert_eq!((got.values.len(), got.has_more), (20, Some(true)));
    s.close().await;
}

/// The template and the two prompts `--tools task_result_add,task_result_list` keeps.
async fn complete_everywhere_offered(c: &Client, value: &str) -> CompletionInfo {
    let first = complete_ref(c, Reference::for_resource(TEMPLATE), "taskId", value).await;
    for prompt in ["record_result", "review_results"] {
        let got = complete_ref(c, Reference::for_prompt(prompt), "taskId", value).await;
        assert_eq!(got, first, "{prompt}");
    }
    first
}

/// A server on a fresh sandbox whose next `tasks.task.list` calls meet `fault`.
async fn faulty(fault: Fault, times: u32) -> (Sandbox, Session) {
    let (sandbox, s) =
        spawn_with_sandbox(SandboxOptions::default(), &[("RUST_LOG", "debug")]).await;
    sandbox.inject("tasks.task.list", fault, times);
    (sandbox, s)
}

/// Completes "5" for record_result; asserts it was quick and empty.
async fn completes_nothing_quickly(c: &Client) {
    let started = Instant::now();
    let got = complete_ref(c, Reference::for_prompt("record_result"), "taskId", "5").await;
    let took = started.elapsed();
    assert!(took < QUICK, "the completion took {took:?}");
    assert!(got.values.is_empty(), "{got:?}");
}

#[tokio::test]
async fn a_failing_slow_or_rate_limited_portal_completes_nothing_quickly() {
    let scenarios = [
        // The portal fails, as often as the client would retry.
        (Fault::InternalError, 10),
        // The portal is slow.
        (Fault::Slow(Duration::from_secs(5)), 10),
        // The portal refuses for its rate limit, with a Retry-After longer than a second.
        (
            Fault::QueryLimitExceeded {
                retry_after: Some(5),
            },
            10,
        ),
        (Fault::InternalErrorV3, 10),
    ];
    for (fault, times) in scenarios {
        let (sandbox, s) = faulty(fault.clone(), times).await;
        completes_nothing_quickly(&s.client).await;
        // A slow answer is recorded once it is sent, after the completion gave up.
        if !matches!(fault, Fault::Slow(_)) {
            assert!(
                !requests_for(&sandbox, "tasks.task.list").is_empty(),
                "{fault:?}: the portal was asked"
            );
        }
        assert!(
            s.stderr().contains("task id completion"),
            "{fault:?}: logged at debug: {}",
            s.stderr()
        );
        s.close().await;
    }

    // This server's own bucket is saturated: the completion does not wait for a slot.
    let sandbox = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let url = sandbox.webhook_url();
    // One slot every 2 s, burst 1: a call right after another must wait 2 s.
    let s = spawn(
        &[],
        &[
            ("BITRIX24_WEBHOOK_URL", url.as_str()),
            ("BITRIX24_RATE", "0.5"),
            ("BITRIX24_BURST", "1"),
        ],
    )
    .await;
    ok(&call(&s.client, "task_get", json!({"taskId": 51})).await);
    let before = sandbox.requests().len();
    completes_nothing_quickly(&s.client).await;
    assert_eq!(sandbox.requests().len(), before, "nothing was sent");
    // Once the bucket drained, completion works again.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let got = complete_ref(
        &s.client,
        Reference::for_prompt("record_result"),
        "taskId",
        "5",
    )
    .await;
    assert!(got.values.contains(&"51".to_string()), "{got:?}");
    s.close().await;
}

#[tokio::test]
async fn a_search_without_the_task_scope_says_which_scope_to_tick() {
    let (sandbox, s) = spawn_with_sandbox(
        SandboxOptions {
            webhook_scopes: vec!["tasks".into(), "im".into()],
            ..SandboxOptions::default()
        },
        &[],
    )
    .await;
    let e = err(&call(&s.client, "task_search", json!({})).await);
    assert!(
        e.contains("insufficient_scope") && e.contains("`task` scope"),
        "{e}"
    );
    assert!(e.contains("task_get"), "{e}");
    // task_get is REST 3.0: `tasks` is enough.
    ok(&call(&s.client, "task_get", json!({"taskId": 51})).await);
    // Completion needs `task` too: an empty list, not an error.
    let got = complete_ref(
        &s.client,
        Reference::for_prompt("record_result"),
        "taskId",
        "5",
    )
    .await;
    assert!(got.values.is_empty());
    assert!(!requests_for(&sandbox, "tasks.task.list").is_empty());
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_person_searches_and_completes_as_themselves() {
    let team = sign_in_support::Team::new().await;
    let server = team.server(&[], &[]).await;
    let client = sign_in_support::Client::discover_and_register(&server).await;
    let two = client.sign_in(2).await;
    let c = http_support::connect(&server.mcp_url(), Some(&two.access))
        .await
        .expect("connect as user 2");
    // User 2 is responsible for 52, 53, 59, 60, 61; 53 is theirs alone.
    let page = search(
        &c,
        json!({"role": "responsible", "status": "any", "orderBy": "id"}),
    )
    .await;
    assert_eq!(ids(&page), [61, 60, 59, 53, 52]);
    assert_eq!(
        last_body(&team.sandbox, "tasks.task.list")["filter"],
        json!({"RESPONSIBLE_ID": 2})
    );
    assert_eq!(
        page["items"][0]["url"],
        format!(
            "{}/company/personal/user/2/tasks/task/view/61/",
            team.sandbox.base_url()
        )
    );
    let task = ok(&call(&c, "task_get", json!({"taskId": 53})).await);
    assert_eq!(task["title"], "Confidential task");
    // Completion runs as the person: 53 is among user 2's tasks, not among user 1's.
    let got = complete_ref(&c, Reference::for_prompt("record_result"), "taskId", "5").await;
    assert!(got.values.contains(&"53".to_string()), "{got:?}");
    let got = complete_ref(
        &c,
        Reference::for_resource(TEMPLATE),
        "taskId",
        "Confidential",
    )
    .await;
    assert_eq!(got.values, ["53"]);
    let one = client.sign_in(1).await;
    let c1 = http_support::connect(&server.mcp_url(), Some(&one.access))
        .await
        .expect("connect as user 1");
    let got = complete_ref(&c1, Reference::for_prompt("record_result"), "taskId", "5").await;
    assert!(!got.values.contains(&"53".to_string()), "{got:?}");
    assert!(got.values.contains(&"58".to_string()), "{got:?}");
    let _ = c.cancel().await;
    let _ = c1.cancel().await;
}
