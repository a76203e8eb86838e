//! Every documented method error: status, code and validation field. Long because it is
//! a table: one test per documented error of each method.

use serde_json::{Value, json};

use super::*;

const RV: &str = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION";
const DTO: &str = "BITRIX_REST_V3_EXCEPTION_VALIDATION_DTOVALIDATIONEXCEPTION";
const UNKNOWN: &str = "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION";
const DENIED: &str = "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION";
const RFV: &str = "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION";
const INVALID_FILTER: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDFILTEREXCEPTION";
const UNKNOWN_OP: &str = "BITRIX_REST_V3_EXCEPTION_UNKNOWNFILTEROPERATOREXCEPTION";
const PAGINATION: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION";
const ORDER: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDORDEREXCEPTION";
const SELECT: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION";
const NOT_FOUND: &str = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION";

/// (body, status, code, field, message substring)
type Case = (Value, u16, &'static str, Option<&'static str>, &'static str);

async fn check_cases(method: &str, cases: Vec<Case>) {
    let sb = start().await;
    for (body, status, code, field, message) in cases {
        let r = v3(&sb, method, body.clone()).await;
        assert_v3_error(&r, status, code, field);
        if !message.is_empty() {
            assert!(
                r.text.contains(message),
                "{method} {body}: expected message containing {message:?}, got {}",
                r.text
            );
        }
    }
    // None of the failed calls changed anything.
    assert_eq!(sb.results().len(), 2, "{method}");
}

#[tokio::test]
async fn add_errors() {
    let long = "x".repeat(30_001);
    check_cases(
        "tasks.task.result.add",
        vec![
            (
                json!({}),
                400,
                RV,
                Some("fields"),
                "Required field `fields` is missing",
            ),
            (json!({"fields": "x"}), 400, RV, Some("fields"), ""),
            (
                json!({"fields": {"taskId": 51, "text": "a", "foo": 1}}),
                400,
                UNKNOWN,
                Some("fields"),
                "foo",
            ),
            (
                json!({"fields": {"taskId": 51, "text": "a", "fileIds": [1]}}),
                400,
                DTO,
                Some("fileIds"),
                "not available for filling",
            ),
            (
                json!({"fields": {"text": "a"}}),
                400,
                DTO,
                Some("taskId"),
                "",
            ),
            (
                json!({"fields": {"taskId": 51}}),
                400,
                DTO,
                Some("text"),
                "",
            ),
            (
                json!({"fields": {"taskId": 51, "text": ""}}),
                400,
                DTO,
                Some("text"),
                "The required field \\\"text\\\" is not filled",
            ),
            (
                json!({"fields": {"taskId": 51, "text": "  \n"}}),
                400,
                DTO,
                Some("text"),
                "",
            ),
            (
                json!({"fields": {"taskId": 51, "text": long}}),
                400,
                DTO,
                Some("text"),
                "30000",
            ),
            (
                json!({"fields": {"taskId": "51", "text": "a"}}),
                400,
                RV,
                Some("taskId"),
                "requires `int` data type",
            ),
            (
                json!({"fields": {"taskId": 51.5, "text": "a"}}),
                400,
                RV,
                Some("taskId"),
                "",
            ),
            (
                json!({"fields": {"taskId": 51, "text": 5}}),
                400,
                RV,
                Some("text"),
                "",
            ),
            (
                json!({"fields": {"taskId": 0, "text": "a"}}),
                400,
                RV,
                Some("taskId"),
                "Task id must be set",
            ),
            (
                json!({"fields": {"taskId": -3, "text": "a"}}),
                400,
                RV,
                Some("taskId"),
                "Task id must be positive",
            ),
            (
                json!({"fields": {"taskId": 999, "text": "a"}}),
                400,
                RV,
                Some("taskId"),
                "Task not found",
            ),
            (
                json!({"fields": {"taskId": 53, "text": "a"}}),
                403,
                DENIED,
                Some("taskId"),
                "Access denied",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn add_reports_all_dto_violations_and_accepts_max_text() {
    let sb = start().await;
    let r = v3(
        &sb,
        "tasks.task.result.add",
        json!({"fields": {"fileIds": []}}),
    )
    .await;
    assert_v3_error(&r, 400, DTO, Some("fileIds"));
    let fields: Vec<&str> = r.json["error"]["validation"]
        .as_array()
        .expect("validation")
        .iter()
        .filter_map(|v| v["field"].as_str())
        .collect();
    assert_eq!(fields, ["fileIds", "taskId", "text"]);
    let ok = v3(
        &sb,
        "tasks.task.result.add",
        json!({"fields": {"taskId": 51, "text": "é".repeat(30_000)}}),
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn add_from_chat_message_errors() {
    check_cases(
        "tasks.task.result.addfromchatmessage",
        vec![
            (
                json!({}),
                400,
                RV,
                Some("fields"),
                "Required field `fields` is missing",
            ),
            (json!({"fields": {}}), 400, DTO, Some("messageId"), ""),
            (
                json!({"fields": {"messageId": 335, "fileIds": [1]}}),
                400,
                DTO,
                Some("fileIds"),
                "",
            ),
            (
                json!({"fields": {"messageId": 335, "text": "x"}}),
                400,
                UNKNOWN,
                Some("fields"),
                "ResultDto",
            ),
            (
                json!({"fields": {"messageId": 335, "taskId": 51}}),
                400,
                UNKNOWN,
                Some("fields"),
                "",
            ),
            (
                json!({"fields": {"messageId": "335"}}),
                400,
                RV,
                Some("messageId"),
                "",
            ),
            (
                json!({"fields": {"messageId": 900}}),
                400,
                RV,
                Some("messageId"),
                "Message is not from task chat",
            ),
            (
                json!({"fields": {"messageId": 360}}),
                400,
                RV,
                Some("taskId"),
                "Task not found",
            ),
            (
                json!({"fields": {"messageId": 99999}}),
                400,
                RV,
                Some("messageId"),
                "Message not found",
            ),
            (
                json!({"fields": {"messageId": 345}}),
                403,
                DENIED,
                Some("messageId"),
                "",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn update_errors() {
    check_cases(
        "tasks.task.result.update",
        vec![
            (
                json!({"fields": {"text": "x"}}),
                400,
                RV,
                None,
                "At least one required field must be filled: id, filter",
            ),
            (
                json!({"id": 18, "filter": [["id", 18]], "fields": {"text": "x"}}),
                400,
                RV,
                None,
                "Only one of the values must be provided: id, filter",
            ),
            (
                json!({"filter": [["id", 18]], "fields": {"text": "x"}}),
                400,
                RV,
                Some("filter"),
                "",
            ),
            (
                json!({"id": "18", "fields": {"text": "x"}}),
                400,
                RV,
                Some("id"),
                "requires `int`",
            ),
            (
                json!({"id": 0, "fields": {"text": "x"}}),
                400,
                RV,
                Some("id"),
                "positive",
            ),
            (
                json!({"id": 18}),
                400,
                RV,
                Some("fields"),
                "Required field `fields` is missing",
            ),
            (json!({"id": 18, "fields": {}}), 400, DTO, Some("text"), ""),
            (
                json!({"id": 18, "fields": {"text": ""}}),
                400,
                DTO,
                Some("text"),
                "",
            ),
            (
                json!({"id": 18, "fields": {"text": "x", "fileIds": [1]}}),
                400,
                DTO,
                Some("fileIds"),
                "",
            ),
            (
                json!({"id": 18, "fields": {"text": "x", "status": "open"}}),
                400,
                UNKNOWN,
                Some("fields"),
                "status",
            ),
            (
                json!({"id": 18, "fields": {"text": "x".repeat(30_001)}}),
                400,
                DTO,
                Some("text"),
                "",
            ),
            (
                json!({"id": 17, "fields": {"text": "x"}}),
                403,
                DENIED,
                Some("id"),
                "",
            ),
            (
                json!({"id": 99999, "fields": {"text": "x"}}),
                403,
                DENIED,
                Some("id"),
                "",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn update_and_delete_empty_body_match_documented_example() {
    let sb = start().await;
    let r = v3(&sb, "tasks.task.result.delete", json!({})).await;
    assert_eq!(
        r.json,
        json!({"error": {"code": RV, "message": "Error validating the request object", "validation": [
            {"message": "At least one required field must be filled: id, filter"},
            {"message": "Only one of the values must be provided: id, filter"}]}})
    );
}

#[tokio::test]
async fn delete_errors() {
    check_cases(
        "tasks.task.result.delete",
        vec![
            (json!({}), 400, RV, None, "At least one required field"),
            (
                json!({"id": 18, "filter": [["id", 18]]}),
                400,
                RV,
                None,
                "Only one of the values",
            ),
            (json!({"id": "18"}), 400, RV, Some("id"), ""),
            (json!({"id": -1}), 400, RV, Some("id"), ""),
            (json!({"id": 17}), 403, DENIED, Some("id"), "Access denied"),
            (json!({"id": 99999}), 403, DENIED, Some("id"), ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn list_errors() {
    let f = |extra: Value| {
        let mut body = json!({"filter": [["taskId", 51]]});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    check_cases(
        "tasks.task.result.list",
        vec![
            (
                json!({}),
                400,
                RV,
                Some("filter"),
                "The field value cannot be empty",
            ),
            (json!({"filter": []}), 400, RV, Some("filter"), ""),
            (
                json!({"filter": {"taskId": 51}}),
                400,
                INVALID_FILTER,
                Some("filter"),
                "",
            ),
            (
                json!({"filter": [["taskId"]]}),
                400,
                INVALID_FILTER,
                Some("filter"),
                "",
            ),
            (
                json!({"filter": ["taskId", 51]}),
                400,
                INVALID_FILTER,
                Some("filter"),
                "",
            ),
            (
                json!({"filter": [["taskId", 51], ["id", "between", [1]]]}),
                400,
                INVALID_FILTER,
                Some("filter"),
                "",
            ),
            (
                json!({"filter": [["taskId", "like", 51]]}),
                400,
                UNKNOWN_OP,
                Some("filter"),
                "",
            ),
            (
                json!({"filter": [["taskId", "51"]]}),
                400,
                RV,
                Some("taskId"),
                "requires an `int`",
            ),
            (
                json!({"filter": [["taskId", 51], ["status", 1]]}),
                400,
                RV,
                Some("status"),
                "",
            ),
            (
                json!({"filter": [["id", 17]]}),
                400,
                RFV,
                Some("filter.taskId"),
                "A filter for the required field `taskId` must be specified",
            ),
            (
                json!({"filter": [["taskId", ">", 1]]}),
                400,
                RFV,
                Some("filter.taskId"),
                "",
            ),
            (
                json!({"filter": [{"logic": "or", "conditions": [["taskId", 51]]}]}),
                400,
                RFV,
                Some("filter.taskId"),
                "",
            ),
            (
                json!({"filter": [["taskId", 51], ["text", "x"]]}),
                400,
                UNKNOWN,
                Some("filter"),
                "text",
            ),
            (
                f(json!({"select": ["id", "foo"]})),
                400,
                UNKNOWN,
                Some("select"),
                "foo",
            ),
            (
                f(json!({"select": ["author.secret"]})),
                400,
                UNKNOWN,
                Some("select"),
                "",
            ),
            (f(json!({"select": "id"})), 400, SELECT, Some("select"), ""),
            (
                f(json!({"order": {"text": "ASC"}})),
                400,
                UNKNOWN,
                Some("order"),
                "",
            ),
            (
                f(json!({"order": {"id": "UP"}})),
                400,
                ORDER,
                Some("order"),
                "",
            ),
            (f(json!({"order": "id"})), 400, ORDER, Some("order"), ""),
            (
                f(json!({"pagination": {"limit": 0}})),
                400,
                PAGINATION,
                Some("pagination"),
                "",
            ),
            (
                f(json!({"pagination": {"limit": "abc"}})),
                400,
                PAGINATION,
                Some("pagination"),
                "abc",
            ),
            (
                f(json!({"pagination": {"limit": 1001}})),
                400,
                PAGINATION,
                Some("pagination"),
                "",
            ),
            (
                f(json!({"pagination": {"offset": -1}})),
                400,
                PAGINATION,
                Some("pagination"),
                "",
            ),
            (
                f(json!({"pagination": 5})),
                400,
                PAGINATION,
                Some("pagination"),
                "",
            ),
            (
                json!({"filter": [["taskId", 53]]}),
                403,
                DENIED,
                Some("taskId"),
                "",
            ),
            (
                json!({"filter": [["taskId", 999]]}),
                403,
                DENIED,
                Some("taskId"),
                "",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn list_limit_bounds() {
    let sb = start().await;
    for limit in [1, 1000] {
        let r = v3(
            &sb,
            "tasks.task.result.list",
            json!({"filter": [["taskId", 51]], "pagination": {"limit": limit}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

#[tokio::test]
async fn task_get_errors() {
    check_cases(
        "tasks.task.get",
        vec![
            (json!({}), 400, RV, Some("id"), ""),
            (json!({"id": "51"}), 400, RV, Some("id"), ""),
            (
                json!({"id": 999}),
                400,
                NOT_FOUND,
                None,
                "Record with ID = `999` not found",
            ),
            (json!({"id": 53}), 403, DENIED, Some("id"), ""),
            (
                json!({"id": 51, "select": ["creator.shoeSize"]}),
                400,
                UNKNOWN,
                Some("select"),
                "",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn chat_message_send_errors() {
    check_cases(
        "tasks.task.chat.message.send",
        vec![
            (json!({}), 400, RV, Some("fields"), ""),
            (
                json!({"fields": {"text": "x"}}),
                400,
                DTO,
                Some("taskId"),
                "",
            ),
            (
                json!({"fields": {"taskId": "51", "text": "x"}}),
                400,
                RV,
                Some("taskId"),
                "",
            ),
            (
                json!({"fields": {"taskId": 53, "text": "x"}}),
                403,
                DENIED,
                Some("taskId"),
                "",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn im_errors_are_v1() {
    let sb = start().await;
    let url = format!("{}im.dialog.messages.get", sb.webhook_url());
    assert_v1_error(&post(&url, "{}", &[]).await, 400, "DIALOG_ID_EMPTY");
    assert_v1_error(
        &post(&url, r#"{"DIALOG_ID":"chat2539"}"#, &[]).await,
        400,
        "ACCESS_ERROR",
    );
    assert_v1_error(
        &post(&url, r#"{"DIALOG_ID":"chat424242"}"#, &[]).await,
        400,
        "ACCESS_ERROR",
    );
    // A bare user id is the private dialog with that user, where message 900 lives.
    let private = post(&url, r#"{"DIALOG_ID":"2"}"#, &[]).await;
    assert_eq!(
        private.json["result"]["messages"][0]["id"], 900,
        "{}",
        private.text
    );
    let add = format!("{}im.message.add", sb.webhook_url());
    assert_v1_error(
        &post(&add, r#"{"DIALOG_ID":"chat2537"}"#, &[]).await,
        400,
        "MESSAGE_EMPTY",
    );
    let v1_list = format!("{}tasks.task.result.list", sb.webhook_url());
    assert_v1_error(
        &post(&v1_list, r#"{"taskId":"abc"}"#, &[]).await,
        400,
        "100",
    );
    assert_v1_error(&post(&v1_list, r#"{"taskId":53}"#, &[]).await, 400, "0");
}
