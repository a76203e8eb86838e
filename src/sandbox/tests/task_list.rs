//! v1 `tasks.task.list` and the task fields of REST 3.0 `tasks.task.get`.

use serde_json::{Value, json};

use super::*;
use crate::sandbox::NewTask;

async fn list(sb: &Sandbox, body: Value) -> Resp {
    post(
        &format!("{}tasks.task.list", sb.webhook_url()),
        &body.to_string(),
        &[],
    )
    .await
}

fn ids(r: &Resp) -> Vec<i64> {
    r.json["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks in {}", r.text))
        .iter()
        .map(|t| t["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_only_visible_tasks_newest_first_in_the_v1_shape() {
    let sb = start().await;
    let r = list(
        &sb,
        json!({"select": ["ID", "TITLE", "STATUS", "RESPONSIBLE_ID"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 53 belongs to user 2 alone; the default order is ID desc.
    assert_eq!(ids(&r), [61, 60, 59, 58, 57, 56, 54, 52, 51]);
    assert_eq!(r.json["total"], 9);
    assert!(r.json.get("next").is_none(), "{}", r.text);
    assert!(r.json["time"]["operating"].is_number());
    let t = &r.json["result"]["tasks"][7];
    assert_eq!(t["id"], "52");
    assert_eq!(t["status"], "3");
    assert_eq!(t["responsibleId"], "2");
    assert_eq!(t["responsible"]["name"], "Other User");
    assert!(t.get("deadline").is_none(), "only what was selected: {t}");
}

#[tokio::test]
async fn filters_by_words_role_and_status() {
    let sb = start().await;
    let q = |f: Value| list(&sb, json!({"filter": f, "select": ["ID"]}));
    assert_eq!(ids(&q(json!({"%TITLE": "LOGIN"})).await), [52]);
    assert_eq!(ids(&q(json!({"%TITLE": "отчёт"})).await), [57]);
    assert_eq!(ids(&q(json!({"TITLE": "%страниц%"})).await), [58]);
    assert_eq!(
        ids(&q(json!({"RESPONSIBLE_ID": 2})).await),
        [61, 60, 59, 52]
    );
    assert_eq!(
        ids(&q(json!({"CREATED_BY": "1"})).await),
        [60, 58, 54, 52, 51]
    );
    assert_eq!(ids(&q(json!({"AUDITOR": 1})).await), [61, 59]);
    assert_eq!(ids(&q(json!({"MEMBER": 1, "REAL_STATUS": 5})).await), [54]);
    assert_eq!(
        ids(&q(json!({"MEMBER": 1, "!REAL_STATUS": [5, 7]})).await),
        [61, 60, 58, 57, 56, 52, 51]
    );
    assert_eq!(ids(&q(json!({"REAL_STATUS": [4, 6]})).await), [58, 56]);
    assert_eq!(ids(&q(json!({"STATUS": -1})).await), [56], "overdue");
    assert_eq!(ids(&q(json!({"<ID": 54, ">=ID": 52})).await), [52]);
    assert!(
        ids(&q(json!({"!%TITLE": "a"})).await)
            .iter()
            .all(|id| [58, 57, 60].contains(id))
    );
    assert!(ids(&q(json!({"<DEADLINE": "2000-01-01"})).await).is_empty());
    assert_eq!(
        ids(&q(json!({"MEMBER": 2, "::SUBFILTER-PARAMS": {"FAVORITE": "Y"}, "TAG": "x"})).await)
            .len(),
        8
    );
}

#[tokio::test]
async fn orders_as_written_and_pages_by_fifty() {
    let sb = start().await;
    let changed = list(
        &sb,
        json!({"order": {"CHANGED_DATE": "desc", "ID": "desc"}, "select": ["ID"]}),
    )
    .await;
    assert_eq!(ids(&changed)[..4], [52, 51, 57, 56]);
    let deadline = list(
        &sb,
        json!({"order": {"DEADLINE": "asc"}, "select": ["ID"], "filter": {"!REAL_STATUS": [5, 7]}}),
    )
    .await;
    // Earliest first (56 is overdue); tasks without one last.
    assert_eq!(ids(&deadline), [56, 52, 60, 51, 57, 61, 58]);
    for i in 0..60 {
        sb.add_task(NewTask {
            title: format!("Generated task {i}"),
            ..NewTask::default()
        });
    }
    let first = list(
        &sb,
        json!({"select": ["ID"], "filter": {"%TITLE": "generated"}}),
    )
    .await;
    assert_eq!(
        (
            ids(&first).len(),
            first.json["total"].clone(),
            first.json["next"].clone()
        ),
        (50, json!(60), json!(50))
    );
    // `start` counts records and is rounded down to a page.
    let second = list(
        &sb,
        json!({"select": ["ID"], "filter": {"%TITLE": "generated"}, "start": 57}),
    )
    .await;
    assert_eq!(ids(&second).len(), 10);
    assert!(second.json.get("next").is_none());
    assert!(ids(&first).iter().all(|id| !ids(&second).contains(id)));
    let uncounted = list(&sb, json!({"select": ["ID"], "start": -1})).await;
    assert!(uncounted.json.get("total").is_none() && ids(&uncounted).len() == 50);
}

#[tokio::test]
async fn errors_have_the_v1_shape() {
    let sb = start().await;
    for body in [
        json!({"order": {"NO_SUCH_FIELD": "asc"}}),
        json!({"filter": {"NOPE": 1}}),
        json!({"filter": {"?TITLE": "x"}}),
        json!({"filter": {">DEADLINE": "tomorrow"}}),
    ] {
        let r = list(&sb, body.clone()).await;
        assert_v1_error(&r, 400, "0");
        assert!(
            r.json["error_description"]
                .as_str()
                .unwrap()
                .contains("internal error"),
            "{body}: {}",
            r.text
        );
    }
    let r = list(&sb, json!({"filter": "x"})).await;
    assert_v1_error(&r, 400, "100");
    // The v1 method needs `task`; REST 3.0's `tasks` is not enough.
    let only_tasks = start_with(SandboxOptions {
        webhook_scopes: vec!["tasks".into()],
        ..SandboxOptions::default()
    })
    .await;
    let r = list(&only_tasks, json!({})).await;
    assert_v1_error(&r, 401, "insufficient_scope");
    // Unknown to REST 3.0 under that name? No: REST 3.0 has its own tasks.task.list; the
    // sandbox does not emulate it, so /rest/api/ says so.
    let r = v3(&sb, "tasks.task.list", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn result_info_and_task_get_fields() {
    let sb = start().await;
    let r = list(
        &sb,
        json!({"select": ["ID"], "filter": {"ID": 51}, "params": {"WITH_RESULT_INFO": true}}),
    )
    .await;
    let t = &r.json["result"]["tasks"][0];
    assert_eq!(
        (t["taskRequireResult"].clone(), t["taskHasResult"].clone()),
        (json!("Y"), json!("Y"))
    );
    let get = v3(
        &sb,
        "tasks.task.get",
        json!({"id": 56, "select": ["id", "status", "deadline", "requireResult", "containsResults", "rights", "link", "creator.name", "responsible.id", "responsible.name"]}),
    )
    .await;
    assert_eq!(get.status, 200, "{}", get.text);
    let item = &get.json["result"]["item"];
    assert_eq!(item["status"], "supposedly_completed");
    assert_eq!(item["requireResult"], true);
    assert_eq!(item["containsResults"], false);
    assert_eq!(item["creator"], json!({"name": "Other User"}));
    assert_eq!(
        item["responsible"],
        json!({"id": 1, "name": "Sandbox User"})
    );
    assert_eq!(item["link"], "/company/personal/user/1/tasks/task/view/56/");
    assert_eq!(item["rights"]["createResult"], true);
    assert_portal_date(&item["deadline"]);
    assert!(item.get("title").is_none());
}
