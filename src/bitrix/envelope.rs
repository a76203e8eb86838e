//! Decoding REST answers: the v3 success envelope, and errors in both the v3 object
//! form (`{"error":{"code","message","validation"}}`) and the v1 string form
//! (`{"error":"CODE","error_description":"…"}`).
//! Over 400 lines: about half is the unit tests, one per documented answer shape.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::{CallError, FieldError, PortalError};

/// A decoded success: the `result` object and the portal's `time` block.
#[derive(Debug)]
pub struct Success<T> {
    /// The typed `result` object.
    pub result: T,
    /// Timing information; every field optional, as the docs warn.
    pub time: TimeInfo,
    /// v1 lists: `total`, the number of records found, beside `result` (REST 3.0 has none).
    pub total: Option<u64>,
    /// v1 lists: `next`, the `start` of the next page, beside `result`; absent on the last.
    pub next: Option<u64>,
}

/// The `time` object of an answer (every field optional, numbers may be int or float).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct TimeInfo {
    /// Server-side duration in seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: Option<f64>,
    /// Accumulated method time in seconds (operating limit).
    #[serde(default, deserialize_with = "lenient_f64")]
    pub operating: Option<f64>,
    /// When the oldest operating bucket drops out (unix seconds).
    #[serde(default, deserialize_with = "lenient_f64")]
    pub operating_reset_at: Option<f64>,
}

/// Decodes an answer body. `status` and `retry_after` come from the HTTP layer.
pub fn decode<T: DeserializeOwned>(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Success<T>, CallError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(CallError::Decode {
                status,
                detail: describe_non_json(body, &e),
            });
        }
    };
    let Value::Object(mut map) = value else {
        return Err(CallError::Decode {
            status,
            detail: "the body is JSON but not an object".into(),
        });
    };
    let time: TimeInfo = map
        .get("time")
        .and_then(|t| TimeInfo::deserialize(t).ok())
        .unwrap_or_default();

    if let Some(error) = map.get("error") {
        return Err(CallError::Portal(portal_error(
            status,
            retry_after,
            error,
            &map,
            &time,
        )));
    }
    if !(200..300).contains(&status) {
        return Err(CallError::Decode {
            status,
            detail: "an error status without an `error` member".into(),
        });
    }
    let Some(result) = map.remove("result") else {
        return Err(CallError::Decode {
            status,
            detail: "no `result` member in a success answer".into(),
        });
    };
    // v1 lists page with `total` and `next` beside `result` (docs: tasks-task-list.md).
    let count = |key: &str| {
        map.get(key)
            .and_then(number)
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .map(|n| n as u64)
    };
    let (total, next) = (count("total"), count("next"));
    let result = serde_path_to_error::deserialize(result).map_err(|e| CallError::Decode {
        status,
        // serde quotes the offending value whole; a portal can make that megabytes.
        detail: clip(
            &match e.path().to_string().as_str() {
                "." => format!("`result`: {}", e.inner()),
                path => format!("`result.{path}`: {}", e.inner()),
            },
            MAX_DETAIL_CHARS,
        ),
    })?;
    Ok(Success {
        result,
        time,
        total,
        next,
    })
}

fn portal_error(
    status: u16,
    retry_after: Option<Duration>,
    error: &Value,
    envelope: &serde_json::Map<String, Value>,
    time: &TimeInfo,
) -> PortalError {
    let reset_at = |v: Option<&Value>| v.and_then(number);
    let (code, message, validation, inner_reset) = match error {
        // v3: the error is an object with a code.
        Value::Object(obj) => (
            obj.get("code").map(scalar_text).unwrap_or_default(),
            obj.get("message").map(scalar_text).unwrap_or_default(),
            obj.get("validation")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(field_error)
                        .take(MAX_VALIDATION_ENTRIES)
                        .collect()
                })
                .unwrap_or_default(),
            reset_at(obj.get("operating_reset_at")),
        ),
        // v1: the error is a string (sometimes a numeric one) with a description beside it.
        other => (
            scalar_text(other),
            envelope
                .get("error_description")
                .map(scalar_text)
                .unwrap_or_default(),
            Vec::new(),
            None,
        ),
    };
    PortalError {
        status,
        code: if code.is_empty() {
            format!("HTTP_{status}")
        } else {
            code
        },
        message,
        validation,
        operating_reset_at: inner_reset
            .or_else(|| reset_at(envelope.get("operating_reset_at")))
            .or(time.operating_reset_at),
        retry_after,
    }
}

fn field_error(v: &Value) -> Option<FieldError> {
    let obj = v.as_object()?;
    Some(FieldError {
        field: obj.get("field").map(scalar_text).filter(|f| !f.is_empty()),
        message: obj.get("message").map(scalar_text).unwrap_or_default(),
    })
}

/// Longest text taken from a portal's answer into one error field, in characters: the
/// error goes to the model, and a hostile or broken portal must not fill its context.
pub const MAX_DETAIL_CHARS: usize = 1_000;
/// Most validation entries kept from one error.
const MAX_VALIDATION_ENTRIES: usize = 20;

/// Text of a scalar (other JSON is rendered compactly), clipped to [`MAX_DETAIL_CHARS`].
fn scalar_text(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.as_str().into(),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => other.to_string().into(),
    };
    clip(&text, MAX_DETAIL_CHARS)
}

/// `text` cut to `max` characters, marked when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((end, _)) => format!("{}… (cut)", &text[..end]),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(number))
}

fn describe_non_json(body: &[u8], err: &serde_json::Error) -> String {
    let head = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let trimmed = head.trim_start();
    if trimmed.is_empty() {
        "an empty body".into()
    } else if trimmed.starts_with('<') {
        "an HTML page instead of JSON (a proxy, a maintenance page or a wrong URL)".into()
    } else {
        format!("a body that is not valid JSON ({err})")
    }
}

/// Accepts an id sent as a JSON number or as a numeric string (Bitrix does both).
pub fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a numeric id"))),
    }
}

/// [`lenient_id`] for an optional id that may also be `null`.
pub fn lenient_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "lenient_id")] u64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitrix::error::ErrorClass;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    struct Item {
        #[serde(deserialize_with = "lenient_id")]
        id: u64,
        #[serde(default, deserialize_with = "lenient_opt_id")]
        message_id: Option<u64>,
    }
    #[derive(Debug, Deserialize)]
    struct One {
        item: Item,
    }

    fn portal(status: u16, body: &str) -> PortalError {
        match decode::<Value>(status, None, body.as_bytes()) {
            Err(CallError::Portal(p)) => p,
            other => panic!("expected a portal error, got {other:?}"),
        }
    }

    #[test]
    fn v3_success_with_full_time_block() {
        let body = r#"{"result":{"item":{"id":17,"message_id":null}},"time":{"start":1777529700,"finish":1777529700.123456,"duration":0.123456,"processing":0.1,"date_start":"2026-04-30T10:15:00+02:00","date_finish":"2026-04-30T10:15:00+02:00","operating_reset_at":1777530300,"operating":0}}"#;
        let ok = decode::<One>(200, None, body.as_bytes()).unwrap();
        assert_eq!(ok.result.item.id, 17);
        assert_eq!(ok.result.item.message_id, None);
        assert_eq!(ok.time.operating_reset_at, Some(1777530300.0));
    }

    #[test]
    fn numeric_string_ids_and_missing_time_are_accepted() {
        let ok = decode::<One>(
            200,
            None,
            br#"{"result":{"item":{"id":"18","message_id":"335"}}}"#,
        )
        .unwrap();
        assert_eq!(ok.result.item.id, 18);
        assert_eq!(ok.result.item.message_id, Some(335));
        assert!(ok.time.operating.is_none());
    }

    #[test]
    fn v1_list_paging_beside_the_result() {
        let page = decode::<Value>(
            200,
            None,
            br#"{"result":{"tasks":[]},"total":"120","next":50,"time":{}}"#,
        )
        .unwrap();
        assert_eq!((page.total, page.next), (Some(120), Some(50)));
        let last = decode::<Value>(200, None, br#"{"result":{"tasks":[]},"total":1}"#).unwrap();
        assert_eq!((last.total, last.next), (Some(1), None));
        let odd = decode::<Value>(200, None, br#"{"result":[],"total":-1,"next":"x"}"#).unwrap();
        assert_eq!((odd.total, odd.next), (None, None));
    }

    #[test]
    fn boolean_and_list_results() {
        #[derive(Deserialize)]
        struct B {
            result: bool,
        }
        #[derive(Deserialize)]
        struct L {
            items: Vec<Item>,
        }
        assert!(
            decode::<B>(200, None, br#"{"result":{"result":true},"time":{}}"#)
                .unwrap()
                .result
                .result
        );
        let l = decode::<L>(200, None, br#"{"result":{"items":[{"id":1},{"id":"2"}]}}"#).unwrap();
        assert_eq!(l.result.items.len(), 2);
    }

    #[test]
    fn v3_error_with_validation() {
        let p = portal(
            400,
            r#"{"error":{"code":"BITRIX_REST_V3_EXCEPTION_VALIDATION_DTOVALIDATIONEXCEPTION","message":"Validation error","validation":[{"field":"text","message":"The required field \"text\" is not filled"}]}}"#,
        );
        assert_eq!(p.class(), ErrorClass::Validation);
        assert_eq!(p.fields(), ["text"]);
        assert_eq!(p.message, "Validation error");
    }

    #[test]
    fn v3_error_with_validation_entries_without_field() {
        let p = portal(
            400,
            r#"{"error":{"code":"BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION","message":"Error validating the request object","validation":[{"message":"At least one required field must be filled: id, filter"},{"message":"Only one of the values must be provided: id, filter"}]}}"#,
        );
        assert_eq!(p.validation.len(), 2);
        assert!(p.fields().is_empty());
    }

    #[test]
    fn v3_error_without_validation_and_localised_message() {
        let p = portal(
            403,
            r#"{"error":{"code":"BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION","message":"Доступ запрещён"}}"#,
        );
        assert_eq!(p.class(), ErrorClass::AccessDenied);
        assert_eq!(p.message, "Доступ запрещён");
        assert_eq!(p.status, 403);
    }

    #[test]
    fn v1_error_forms() {
        let p = portal(
            503,
            r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#,
        );
        assert_eq!(p.class(), ErrorClass::QueryLimit);
        assert_eq!(p.message, "Too many requests");
        let p = portal(
            401,
            r#"{"error":"expired_token","error_description":"The access token provided has expired"}"#,
        );
        assert_eq!(p.class(), ErrorClass::ExpiredToken);
        let p = portal(
            404,
            r#"{"error":"ERROR_METHOD_NOT_FOUND","error_description":"Method not found!"}"#,
        );
        assert_eq!(p.class(), ErrorClass::MethodNotFound);
        let p = portal(
            400,
            r#"{"error":"100","error_description":"Invalid value"}"#,
        );
        assert_eq!(p.code, "100");
        let p = portal(400, r#"{"error":100}"#);
        assert_eq!(p.code, "100");
        assert_eq!(p.message, "");
    }

    #[test]
    fn system_error_in_v3_shape() {
        let p = portal(
            401,
            r#"{"error":{"code":"expired_token","message":"The access token provided has expired"}}"#,
        );
        assert_eq!(p.class(), ErrorClass::ExpiredToken);
    }

    #[test]
    fn operating_reset_at_is_found_anywhere() {
        let p = portal(
            429,
            r#"{"error":"OPERATION_TIME_LIMIT","error_description":"Method is blocked due to operation time limit","operating_reset_at":1777530300}"#,
        );
        assert_eq!(p.operating_reset_at, Some(1777530300.0));
        let p = portal(
            429,
            r#"{"error":{"code":"OPERATION_TIME_LIMIT","message":"x","operating_reset_at":"1777530301"}}"#,
        );
        assert_eq!(p.operating_reset_at, Some(1777530301.0));
        let p = portal(
            429,
            r#"{"error":"OPERATION_TIME_LIMIT","time":{"operating_reset_at":1777530302.5}}"#,
        );
        assert_eq!(p.operating_reset_at, Some(1777530302.5));
    }

    #[test]
    fn non_json_and_odd_bodies_are_decode_errors() {
        for (status, body, needle) in [
            (502, "<html><body>Bad gateway</body></html>", "HTML"),
            (200, "", "empty"),
            (200, "{\"result\":", "not valid JSON"),
            (200, "[1,2]", "not an object"),
            (200, "{\"time\":{}}", "no `result`"),
            (500, "{}", "without an `error`"),
        ] {
            match decode::<Value>(status, None, body.as_bytes()) {
                Err(CallError::Decode { status: s, detail }) => {
                    assert_eq!(s, status);
                    assert!(detail.contains(needle), "{body}: {detail}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn portal_text_in_errors_is_bounded() {
        let huge = "я".repeat(100_000);
        let body = json!({"result": {"item": {"id": huge}}}).to_string();
        match decode::<One>(200, None, body.as_bytes()) {
            Err(CallError::Decode { detail, .. }) => {
                assert!(
                    detail.contains("item.id") && detail.ends_with("… (cut)"),
                    "{detail:.80}"
                );
                assert!(detail.chars().count() < MAX_DETAIL_CHARS + 20);
            }
            other => panic!("{other:?}"),
        }
        let validation: Vec<Value> = (0..1000)
            .map(|i| json!({"field": i, "message": huge}))
            .collect();
        let body = json!({"error": {"code": huge, "message": huge, "validation": validation}});
        let p = portal(400, &body.to_string());
        assert!(p.code.chars().count() < MAX_DETAIL_CHARS + 20);
        assert!(p.message.chars().count() < MAX_DETAIL_CHARS + 20);
        assert_eq!(p.validation.len(), MAX_VALIDATION_ENTRIES);
    }

    #[test]
    fn wrong_result_shape_names_the_path() {
        match decode::<One>(200, None, br#"{"result":{"item":{"id":"abc"}}}"#) {
            Err(CallError::Decode { detail, .. }) => {
                assert!(detail.contains("item.id"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }
}
