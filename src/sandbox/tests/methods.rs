//! Success shapes of every method. Long because it is a table: one test per method and
//! answer shape.

use serde_json::{Value, json};

use super::*;

const ITEM_KEYS: [&str; 10] = [
    "id",
    "taskId",
    "text",
    "authorId",
    "createdAt",
    "updatedAt",
    "status",
    "fileIds",
    "rights",
    "messageId",
];

#[track_caller]
fn assert_time(v: &Value) {
    for key in [
        "start",
        "finish",
        "duration",
        "processing",
        "operating",
        "operating_reset_at",
    ] {
        assert!(v[key].is_number(), "time.{key} in {v}");
    }
    assert_portal_date(&v["date_start"]);
    assert_portal_date(&v["date_finish"]);
}

#[track_caller]
fn assert_item(item: &Value) {
    let obj = item.as_object().expect("item object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = ITEM_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{item}");
    assert_portal_date(&item["createdAt"]);
}

#[tokio::test]
async fn add_returns_full_item() {
    let sb = start().await;
    let r = v3(
        &sb,
        "tasks.task.result.add",
        json!({"fields": {"taskId": 51, "text": "Task completed"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let item = &r.json["result"]["item"];
    assert_item(item);
    assert_eq!(item["id"], 100);
    assert_eq!(item["taskId"], 51);
    assert_eq!(item["text"], "Task completed");
    assert_eq!(item["authorId"], 1);
    assert_eq!(item["updatedAt"], Value::Null);
    assert_eq!(item["status"], "open");
    assert_eq!(item["fileIds"], json!([]));
    assert_eq!(item["rights"], json!({"edit": true, "remove": true}));
    assert_eq!(item["messageId"], Value::Null);
    assert_time(&r.json["time"]);
    assert_eq!(sb.results().len(), 3);
    let next = v3(
        &sb,
        "tasks.task.result.add",
        json!({"fields": {"taskId": 52, "text": "Second"}}),
    )
    .await;
    assert_eq!(next.json["result"]["item"]["id"], 101);
}

#[tokio::test]
async fn add_on_completed_task_is_closed() {
    let sb = start().await;
    let r = v3(
        &sb,
        "tasks.task.result.add",
        json!({"fields": {"taskId": 54, "text": "Late note"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"]["item"]["status"], "closed");
}

#[tokio::test]
async fn add_from_chat_message_copies_message() {
    let sb = start().await;
    let r = v3(
        &sb,
        "tasks.task.result.addfromchatmessage",
        json!({"fields": {"messageId": 335}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let item = &r.json["result"]["item"];
    assert_item(item);
    assert_eq!(item["taskId"], 51);
    assert_eq!(item["text"], "Work finished, report attached");
    assert_eq!(item["messageId"], 335);
    assert_eq!(item["fileIds"], json!([7001]));
    assert_eq!(item["status"], "open");

    let empty = v3(
        &sb,
        "tasks.task.result.addfromchatmessage",
        json!({"fields": {"messageId": 337}}),
    )
    .await;
    assert_eq!(empty.status, 200, "{}", empty.text);
    assert_eq!(empty.json["result"]["item"]["text"], "Result");

    let other_chat = v3(
        &sb,
        "tasks.task.result.addfromchatmessage",
        json!({"fields": {"messageId": 340}}),
    )
    .await;
    assert_eq!(other_chat.json["result"]["item"]["taskId"], 52);
}

#[tokio::test]
async fn update_sets_text_and_updated_at() {
    let sb = start().await;
    let added = v3(
        &sb,
        "tasks.task.result.add",
        json!({"fields": {"taskId": 51, "text": "v1"}}),
    )
    .await;
    let id = added.json["result"]["item"]["id"].clone();
    let r = v3(
        &sb,
        "tasks.task.result.update",
        json!({"id": id, "fields": {"text": "Task has been completed and verified"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let item = &r.json["result"]["item"];
    assert_item(item);
    assert_eq!(item["text"], "Task has been completed and verified");
    assert_portal_date(&item["updatedAt"]);
    assert_eq!(item["createdAt"], added.json["result"]["item"]["createdAt"]);
    // The seeded closed result of user 1 stays closed but can be edited by its author.
    let closed = v3(
        &sb,
        "tasks.task.result.update",
        json!({"id": 18, "fields": {"text": "x"}}),
    )
    .await;
    assert_eq!(closed.status, 200, "{}", closed.text);
    assert_eq!(closed.json["result"]["item"]["status"], "closed");
}

#[tokio::test]
async fn delete_removes_result() {
    let sb = start().await;
    let r = v3(&sb, "tasks.task.result.delete", json!({"id": 18})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"], json!({"result": true}));
    assert_time(&r.json["time"]);
    assert!(sb.results().iter().all(|i| i["id"] != 18));
    let again = v3(&sb, "tasks.task.result.delete", json!({"id": 18})).await;
    assert_v3_error(
        &again,
        403,
        "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
        Some("id"),
    );
}

#[tokio::test]
async fn list_default_select_and_rights() {
    let sb = start().await;
    let r = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51]]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.json["result"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_item(&items[0]);
    assert_eq!(items[0]["id"], 17);
    assert_eq!(items[0]["authorId"], 2);
    assert_eq!(items[0]["text"], "Draft numbers checked");
    assert_eq!(items[0]["rights"], json!({"edit": false, "remove": false}));
    assert!(r.json["result"].get("total").is_none());
    assert!(r.json["result"].get("next").is_none());
    assert_time(&r.json["time"]);
}

#[tokio::test]
async fn list_select_order_pagination_and_filters() {
    let sb = start().await;
    for text in ["a", "b", "c"] {
        let r = v3(
            &sb,
            "tasks.task.result.add",
            json!({"fields": {"taskId": 51, "text": text}}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // The documented example request.
    let r = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51]],
               "select": ["id", "taskId", "text", "authorId", "createdAt", "status", "messageId"],
               "order": {"id": "DESC"}, "pagination": {"limit": 2, "offset": 0}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.json["result"]["items"].as_array().expect("items");
    let ids: Vec<i64> = items.iter().filter_map(|i| i["id"].as_i64()).collect();
    assert_eq!(ids, [102, 101]);
    let mut keys: Vec<&str> = items[0]
        .as_object()
        .expect("obj")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "authorId",
            "createdAt",
            "id",
            "messageId",
            "status",
            "taskId",
            "text"
        ]
    );

    let ids_of = |r: &Resp| -> Vec<i64> {
        r.json["result"]["items"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["id"].as_i64()).collect())
            .unwrap_or_default()
    };
    let page2 = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51]], "select": ["id"], "pagination": {"limit": 2, "offset": 2}}),
    )
    .await;
    assert_eq!(ids_of(&page2), [101, 102]);
    let by_page = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51]], "select": ["id"], "pagination": {"limit": 3, "page": 2}}),
    )
    .await;
    assert_eq!(ids_of(&by_page), [102]);
    let filtered = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51], ["id", ">=", 100], ["authorId", 1], ["status", "!=", "closed"]],
               "select": ["id"], "order": {"id": "desc"}}),
    )
    .await;
    assert_eq!(ids_of(&filtered), [102, 101, 100]);
    let in_between = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51], ["id", "in", [17, 101]], ["id", "between", [17, 100]]],
               "select": ["id"]}),
    )
    .await;
    assert_eq!(ids_of(&in_between), [17]);
    let shorthand_in = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51], ["id", [100, 102]], ["messageId", null]], "select": ["id"]}),
    )
    .await;
    assert_eq!(ids_of(&shorthand_in), [100, 102]);
    let or_group = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51], {"logic": "or", "conditions": [["id", 17], ["id", 102]]}],
               "select": ["id"], "order": {"authorId": "ASC", "id": "DESC"}}),
    )
    .await;
    assert_eq!(ids_of(&or_group), [102, 17]);
    let author = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 51], ["id", 17]], "select": ["id", "author"]}),
    )
    .await;
    assert_eq!(
        author.json["result"]["items"][0],
        json!({"id": 17, "author": {"id": 2, "name": "Other User"}})
    );
    let empty = v3(
        &sb,
        "tasks.task.result.list",
        json!({"filter": [["taskId", 52]]}),
    )
    .await;
    assert_eq!(empty.json["result"]["items"], json!([]));
}

#[tokio::test]
async fn list_multi_key_order_follows_request_order() {
    let sb = start().await;
    for task in [51, 51] {
        v3(
            &sb,
            "tasks.task.result.add",
            json!({"fields": {"taskId": task, "text": "x"}}),
        )
        .await;
    }
    let ids_for = |order: &str| {
        let body = format!(r#"{{"filter":[["taskId",51]],"select":["id"],"order":{order}}}"#);
        let url = v3_url(&sb, "tasks.task.result.list");
        async move {
            let r = post(&url, &body, &[]).await;
            r.json["result"]["items"]
                .as_array()
                .expect("items")
                .iter()
                .filter_map(|i| i["id"].as_i64())
                .collect::<Vec<i64>>()
        }
    };
    // Author 2 wrote 17, author 1 wrote 100 and 101.
    assert_eq!(
        ids_for(r#"{"authorId":"DESC","id":"DESC"}"#).await,
        [17, 101, 100]
    );
    assert_eq!(
        ids_for(r#"{"id":"DESC","authorId":"DESC"}"#).await,
        [101, 100, 17]
    );
    assert_eq!(
        ids_for(r#"{"authorId":"asc","id":"asc"}"#).await,
        [100, 101, 17]
    );
}

#[tokio::test]
async fn task_get_default_and_select() {
    let sb = start().await;
    let r = v3(&sb, "tasks.task.get", json!({"id": 51})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let item = &r.json["result"]["item"];
    assert_eq!(item["id"], 51);
    assert_eq!(item["title"], "Prepare the quarterly report");
    assert_eq!(item["chatId"], 2537);
    assert_eq!(item["containsResults"], true);
    assert!(item["status"].is_string());
    let sel = v3(
        &sb,
        "tasks.task.get",
        json!({"id": 52, "select": ["id", "chat.id", "chat.entityType", "noSuchField"]}),
    )
    .await;
    assert_eq!(sel.status, 200, "{}", sel.text);
    assert_eq!(
        sel.json["result"]["item"],
        json!({"id": 52, "chat": {"id": 2538, "entityType": "TASKS_TASK"}})
    );
}

#[tokio::test]
async fn chat_message_send_appends_to_task_chat() {
    let sb = start().await;
    let r = v3(
        &sb,
        "tasks.task.chat.message.send",
        json!({"fields": {"taskId": 51, "text": "Message from external system"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"], json!({"result": true}));
    let msgs = post(
        &format!("{}im.dialog.messages.get", sb.webhook_url()),
        r#"{"DIALOG_ID":"chat2537","LIMIT":1}"#,
        &[],
    )
    .await;
    assert_eq!(
        msgs.json["result"]["messages"][0]["text"],
        "Message from external system"
    );
}

#[tokio::test]
async fn im_dialog_messages_get_v1_shape() {
    let sb = start().await;
    let r = post(
        &format!("{}im.dialog.messages.get", sb.webhook_url()),
        r#"{"DIALOG_ID":"chat2537","LIMIT":20}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let result = &r.json["result"];
    assert_eq!(result["chat_id"], 2537);
    let ids: Vec<i64> = result["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_i64())
        .collect();
    assert_eq!(ids, [337, 336, 335]);
    let first = &result["messages"][2];
    assert_eq!(first["chat_id"], 2537);
    assert_eq!(first["author_id"], 1);
    assert_eq!(first["text"], "Work finished, report attached");
    assert_portal_date(&first["date"]);
    assert!(first["params"].is_object());
    assert_eq!(result["users"].as_array().map(Vec::len), Some(2));
    assert!(r.json["time"].is_object());

    // Paging with LAST_ID and a form-encoded body / query string.
    let older = client()
        .post(format!(
            "{}im.dialog.messages.get?DIALOG_ID=chat2537",
            sb.webhook_url()
        ))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("LAST_ID=337&LIMIT=1")
        .send()
        .await
        .expect("sent");
    let older = read(older).await;
    assert_eq!(older.json["result"]["messages"][0]["id"], 336);
    assert_eq!(
        older.json["result"]["messages"].as_array().map(Vec::len),
        Some(1)
    );
    let newer = post(
        &format!("{}im.dialog.messages.get", sb.webhook_url()),
        r#"{"DIALOG_ID":"chat2537","FIRST_ID":335}"#,
        &[],
    )
    .await;
    let ids: Vec<i64> = newer.json["result"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_i64())
        .collect();
    assert_eq!(ids, [337, 336]);
}

#[tokio::test]
async fn im_message_add_returns_id() {
    let sb = start().await;
    let r = post(
        &format!("{}im.message.add", sb.webhook_url()),
        r#"{"DIALOG_ID":"chat2538","MESSAGE":"Deployed"}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.json["result"].as_i64().expect("message id");
    let res = v3(
        &sb,
        "tasks.task.result.addfromchatmessage",
        json!({"fields": {"messageId": id}}),
    )
    .await;
    assert_eq!(res.json["result"]["item"]["text"], "Deployed");
    assert_eq!(res.json["result"]["item"]["taskId"], 52);
}

#[tokio::test]
async fn v1_result_list_has_v1_shape() {
    let sb = start().await;
    let r = post(
        &format!("{}tasks.task.result.list", sb.webhook_url()),
        r#"{"taskId":54}"#,
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"][0]["id"], 18);
    assert_eq!(r.json["result"][0]["status"], 1);
    assert_eq!(r.json["result"][0]["createdBy"], 1);
}

#[tokio::test]
async fn oauth_form_with_body_auth() {
    let sb = start().await;
    let token = sb.access_token().expect("token");
    let url = format!("{}/rest/api/tasks.task.result.add", sb.base_url());
    let body = json!({"fields": {"taskId": 51, "text": "via oauth"}, "auth": token});
    let r = post(&url, &body.to_string(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["result"]["item"]["authorId"], 1);
    // v1 takes `auth` from the query string too.
    let v1 = post(
        &format!("{}/rest/im.dialog.messages.get?auth={token}", sb.base_url()),
        r#"{"DIALOG_ID":"chat2537"}"#,
        &[],
    )
    .await;
    assert_eq!(v1.status, 200, "{}", v1.text);
}

#[tokio::test]
async fn results_snapshot_matches_rest_items() {
    let sb = start().await;
    let items = sb.results();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], 17);
    assert_eq!(items[0]["rights"], json!({"edit": false, "remove": false}));
    assert_eq!(items[1]["id"], 18);
    assert_eq!(items[1]["status"], "closed");
    assert_eq!(items[1]["rights"], json!({"edit": true, "remove": true}));
}
