//! Response bodies: the REST 3.0 and v1 envelopes, error shapes and the `time` object.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::time;

pub(crate) const REQUEST_VALIDATION: &str =
    "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION";
pub(crate) const DTO_VALIDATION: &str =
    "BITRIX_REST_V3_EXCEPTION_VALIDATION_DTOVALIDATIONEXCEPTION";
pub(crate) const REQUEST_FILTER_VALIDATION: &str =
    "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTFILTERVALIDATIONEXCEPTION";
pub(crate) const INVALID_JSON: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION";
pub(crate) const UNKNOWN_DTO_PROPERTY: &str =
    "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION";
pub(crate) const UNKNOWN_FILTER_OPERATOR: &str =
    "BITRIX_REST_V3_EXCEPTION_UNKNOWNFILTEROPERATOREXCEPTION";
pub(crate) const INVALID_FILTER: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDFILTEREXCEPTION";
pub(crate) const INVALID_PAGINATION: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDPAGINATIONEXCEPTION";
pub(crate) const INVALID_ORDER: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDORDEREXCEPTION";
pub(crate) const INVALID_SELECT: &str = "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION";
pub(crate) const ENTITY_NOT_FOUND: &str = "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION";
pub(crate) const ACCESS_DENIED: &str = "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION";
pub(crate) const INSUFFICIENT_SCOPE: &str = "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION";
pub(crate) const METHOD_NOT_FOUND: &str = "BITRIX_REST_V3_EXCEPTION_METHODNOTFOUNDEXCEPTION";
pub(crate) const IDEMPOTENCY_KEY_REUSED: &str =
    "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION";
pub(crate) const INVALID_IDEMPOTENCY_KEY: &str =
    "BITRIX_REST_V3_EXCEPTION_INVALIDIDEMPOTENCYKEYEXCEPTION";

const JSON_TYPE: &str = "application/json; charset=utf-8";

/// A finished HTTP answer, kept as plain data so it can be recorded and replayed.
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: JSON_TYPE.to_string(),
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    /// The v1 error shape `{"error":"CODE","error_description":"…"}` (docs/bitrix24-api.md#v1-errors), also used
    /// for system errors on `/rest/api/` as docs/bitrix24-api.md#system-errors says.
    pub(crate) fn v1_error(status: u16, code: &str, description: &str) -> Reply {
        Reply::json(
            status,
            &json!({ "error": code, "error_description": description }),
        )
    }

    pub(crate) fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub(crate) fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.content_type) {
            headers.insert(axum::http::header::CONTENT_TYPE, v);
        }
        for (name, value) in self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(n, v);
            }
        }
        response
    }
}

/// One entry of the v3 `validation` array; `field` is absent in some documented bodies.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Violation {
    pub(crate) field: Option<String>,
    pub(crate) message: String,
}

impl Violation {
    pub(crate) fn on(field: &str, message: impl Into<String>) -> Violation {
        Violation {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    pub(crate) fn bare(message: impl Into<String>) -> Violation {
        Violation {
            field: None,
            message: message.into(),
        }
    }
}

/// A REST 3.0 error: `{"error":{"code","message","validation"?}}` (docs/bitrix24-api.md#v3-errors).
#[derive(Clone, Debug)]
pub(crate) struct V3Error {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) validation: Vec<Violation>,
}

impl V3Error {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> V3Error {
        V3Error {
            status,
            code,
            message: message.into(),
            validation: Vec::new(),
        }
    }

    /// 400 with a single violation whose text is also the top-level message.
    pub(crate) fn on_field(code: &'static str, field: &str, message: impl Into<String>) -> V3Error {
        let message = message.into();
        V3Error {
            status: 400,
            code,
            message: message.clone(),
            validation: vec![Violation::on(field, message)],
        }
    }

    /// REQUESTVALIDATION with the top-level message of the documented examples.
    pub(crate) fn request(validation: Vec<Violation>) -> V3Error {
        V3Error {
            status: 400,
            code: REQUEST_VALIDATION,
            message: "Error validating the request object".to_string(),
            validation,
        }
    }

    pub(crate) fn request_field(field: &str, message: impl Into<String>) -> V3Error {
        V3Error::request(vec![Violation::on(field, message)])
    }

    /// DTOVALIDATION with the top-level message of the verbatim add example.
    pub(crate) fn dto(validation: Vec<Violation>) -> V3Error {
        V3Error {
            status: 400,
            code: DTO_VALIDATION,
            message: "Validation error".to_string(),
            validation,
        }
    }

    /// UNKNOWNDTOPROPERTY naming the offending property, reported on `field`.
    pub(crate) fn unknown_property(field: &str, name: &str, entity: &str) -> V3Error {
        V3Error::on_field(
            UNKNOWN_DTO_PROPERTY,
            field,
            format!("Unknown field `{name}` for entity `{entity}`"),
        )
    }

    pub(crate) fn access_denied(field: &str) -> V3Error {
        V3Error {
            status: 403,
            code: ACCESS_DENIED,
            message: "Access denied".to_string(),
            validation: vec![Violation::on(field, "Access denied")],
        }
    }

    pub(crate) fn wrong_type(field: &str, ty: &str) -> V3Error {
        V3Error::request_field(
            field,
            format!("Field `{field}` requires `{ty}` data type for this request"),
        )
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.validation.is_empty() {
            let items: Vec<Value> = self
                .validation
                .iter()
                .map(|v| match &v.field {
                    Some(f) => json!({ "field": f, "message": v.message }),
                    None => json!({ "message": v.message }),
                })
                .collect();
            error["validation"] = Value::Array(items);
        }
        json!({ "error": error })
    }

    pub(crate) fn reply(&self) -> Reply {
        Reply::json(self.status, &self.to_json())
    }
}

/// A v1 method error (`{"error":"CODE","error_description":…}`).
#[derive(Clone, Debug)]
pub(crate) struct V1Error {
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) description: String,
}

impl V1Error {
    pub(crate) fn new(status: u16, code: &str, description: impl Into<String>) -> V1Error {
        V1Error {
            status,
            code: code.to_string(),
            description: description.into(),
        }
    }
}

/// What a method handler can fail with.
#[derive(Clone, Debug)]
pub(crate) enum ApiError {
    V3(V3Error),
    V1(V1Error),
}

impl From<V3Error> for ApiError {
    fn from(e: V3Error) -> Self {
        ApiError::V3(e)
    }
}

impl From<V1Error> for ApiError {
    fn from(e: V1Error) -> Self {
        ApiError::V1(e)
    }
}

impl ApiError {
    pub(crate) fn reply(&self) -> Reply {
        match self {
            ApiError::V3(e) => e.reply(),
            ApiError::V1(e) => Reply::v1_error(e.status, &e.code, &e.description),
        }
    }
}

/// Timing facts that go into the `time` object.
pub(crate) struct Timing {
    pub(crate) start: f64,
    pub(crate) finish: f64,
    pub(crate) processing: f64,
    pub(crate) operating: f64,
    pub(crate) operating_reset_at: i64,
}

/// The `time` object of docs/bitrix24-api.md#answers (same fields on v1 and REST 3.0 responses).
pub(crate) fn time_json(t: &Timing) -> Value {
    json!({
        "start": t.start,
        "finish": t.finish,
        "duration": (t.finish - t.start).max(0.0),
        "processing": t.processing,
        "date_start": time::portal_datetime(t.start.floor() as i64),
        "date_finish": time::portal_datetime(t.finish.floor() as i64),
        "operating_reset_at": t.operating_reset_at,
        "operating": t.operating,
    })
}

/// Key under which a handler hands back members of the envelope that go beside `result`
/// (the `total` and `next` of v1 lists); no field of a real answer starts with NUL.
const ENVELOPE: &str = "\u{0}envelope";

/// A handler's result with `extras` beside it in the envelope (see [`success`]).
pub(crate) fn with_envelope(result: Value, extras: serde_json::Map<String, Value>) -> Value {
    json!({ "result": result, ENVELOPE: extras })
}

/// `{"result": …, "time": …}` with HTTP 200 (and the members [`with_envelope`] added).
pub(crate) fn success(result: Value, timing: &Timing) -> Reply {
    let (result, extras) = match result {
        Value::Object(mut m) if m.contains_key(ENVELOPE) && m.len() == 2 => {
            let extras = m.remove(ENVELOPE);
            (m.remove("result").unwrap_or(Value::Null), extras)
        }
        other => (other, None),
    };
    let mut body = json!({ "result": result });
    if let (Some(Value::Object(extras)), Some(b)) = (extras, body.as_object_mut()) {
        b.extend(extras);
    }
    body["time"] = time_json(timing);
    Reply::json(200, &body)
}
